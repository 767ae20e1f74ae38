"""Export the deploy network to ONNX and check the graph against TensorRT 10's ONNX parser.

The export is static-shape (one resolution and one K per file): TensorRT and ONNX Runtime then
plan all memory once, and the graph has no data-dependent shapes. The TorchScript exporter
cannot trace this network, so the dynamo exporter (``torch.export``) is used.
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

from .base import INPUT_NAMES, OUTPUT_NAMES, EngineError

log = logging.getLogger(__name__)

DEFAULT_OPSET = 18

#: metadata keys written into every export (read back by the engines and the engine cache)
META_HEIGHT = "matchanything_ros.height"
META_WIDTH = "matchanything_ros.width"
META_TOP_K = "matchanything_ros.top_k"
#: the ELoFTRConfig rules baked into the graph (selection, padding/mask, RoPE precision, fine scaling)
META_RULES = "matchanything_ros.rules"
META_FP32_NODES = "matchanything_ros.fp32_nodes"
#: "fp16-mixed" in a graph made by :func:`mixed_fp16`: its precision lives in the graph
META_PRECISION = "matchanything_ros.precision"

#: Prefix given to ONNX nodes that must run in fp32 even in an fp16 TensorRT engine. The ONNX
#: parser names each TensorRT layer after its node (plus a suffix for helper layers), so the
#: TensorRT builder finds these layers by name and pins their precision.
FP32_TAG = "fp32::"

#: Submodule attribute names whose operators get :data:`FP32_TAG`: the coarse similarity matrix and
#: its dual softmax, where fp16 overflows (logits / temperature reach ~1e2; exp() of that is inf).
FP32_SCOPES = ("coarse_matching",)

# ONNX operators TensorRT 10's ONNX parser supports (column "Supported = Y"), taken from
# onnx-tensorrt docs/operators.md, "ONNX-TensorRT 10.1 GA release" (opset 9 to 20), the list the
# TensorRT documentation's "ONNX Operator Support" section links to. NonZero is listed as
# supported but is rejected by check_tensorrt_compatible (data-dependent output shape).
TENSORRT10_ONNX_OPS = frozenset(
    """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization
    Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh
    CumSum DeformConv DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand
    EyeLike Flatten Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool
    GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization GRU HardSigmoid HardSwish
    Hardmax Identity If ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization
    LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max
    MaxPool Mean MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not
    OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike
    RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum
    ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu
    Reshape Resize ReverseSequence RNN RoiAlign Round ScaledTanh Scan Scatter ScatterElements
    ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign
    SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu
    Unsqueeze Upsample Where Xor
    """.split()
)
#: opset range of the default ONNX domain the TensorRT 10 parser accepts (same source)
TENSORRT10_OPSET_RANGE = (9, 20)
#: TensorRT's TopK layer handles at most this many elements (same source: TopK restrictions)
TENSORRT_MAX_TOPK = 3840

# Inputs that the same source requires to be initializers/constants: op -> input indices.
_CONSTANT_INPUTS = {"TopK": (1,), "Slice": (3,), "Squeeze": (1,), "Unsqueeze": (1,), "Pad": (3,), "CumSum": (1,)}
# onnx TensorProto data types TensorRT 10 can hold inside a network (not DOUBLE, STRING, ...).
_TRT_TYPES = {1: "FLOAT", 10: "FLOAT16", 16: "BFLOAT16", 6: "INT32", 7: "INT64", 9: "BOOL", 2: "UINT8", 3: "INT8"}


def export_onnx(
    model,
    path: str | Path,
    height: int,
    width: int,
    *,
    opset: int = DEFAULT_OPSET,
    top_k: int | None = None,
    fp32_scopes: tuple[str, ...] = FP32_SCOPES,
) -> Path:
    """Export ``model`` (``forward(image0, image1, threshold)``) to a single static-shape ONNX file.

    Inputs are named image0, image1 (float32 (1, 1, height, width)) and threshold (float32
    scalar); outputs kpts0, kpts1, scores and candidates (int32, pairs that passed the threshold;
    more than K means the weakest were dropped). The size, K and the number of fp32-tagged nodes are
    stored as metadata. Returns the written path.
    """
    import onnx
    import torch

    if height <= 0 or width <= 0 or height % 32 or width % 32:
        raise ValueError(f"export size {height}x{width}: both sides must be positive multiples of 32")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().float().cpu()
    generator = torch.Generator().manual_seed(0)
    # Random images rather than zeros: no branch of the trace sees a degenerate input.
    args = (
        torch.rand(1, 1, height, width, generator=generator),
        torch.rand(1, 1, height, width, generator=generator),
        torch.tensor(0.2, dtype=torch.float32),
    )
    try:
        with _quiet_exporter(), torch.inference_mode(False), torch.no_grad():
            program = torch.onnx.export(
                model,
                args,
                f=None,
                dynamo=True,
                opset_version=opset,
                input_names=list(INPUT_NAMES),
                output_names=list(OUTPUT_NAMES),
                optimize=True,
                verbose=False,
            )
    except Exception as exc:  # the exporter raises many types; all mean the same to a user
        raise EngineError(f"ONNX export failed: {type(exc).__name__}: {exc}") from exc
    proto = program.model_proto
    if top_k is None:
        top_k = _output_rows(proto)
    tagged = tag_fp32_nodes(proto, fp32_scopes)
    config = getattr(model, "config", None)
    rules = " ".join(f"{k}={getattr(config, k)}" for k in ("match_rule", "pad_to_square", "rope_fp16", "fine_stage1_norm")
                     if hasattr(config, k))
    for key, value in ((META_HEIGHT, height), (META_WIDTH, width), (META_TOP_K, top_k), (META_FP32_NODES, tagged),
                       (META_RULES, rules)):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    proto.producer_name = "matchanything_ros"
    onnx.save_model(proto, str(path))
    log.info("exported %s (%dx%d, K=%s, %d fp32-pinned nodes)", path, height, width, top_k, tagged)
    return path


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter's optimiser logs every pass at INFO (hundreds of lines); keep warnings."""
    names = ("onnx_ir", "onnxscript", "torch.onnx", "torch.onnx._internal.exporter._registration")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR if lg.name.endswith("_registration") else logging.WARNING)
    try:
        with warnings.catch_warnings():
            # torch's own pytree deprecation notices, not actionable by users
            warnings.filterwarnings("ignore", category=FutureWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _output_rows(proto) -> int | None:
    """K from the static shape of the ``scores`` output."""
    for out in proto.graph.output:
        if out.name == "scores":
            dims = out.type.tensor_type.shape.dim
            if len(dims) == 1 and dims[0].HasField("dim_value"):
                return int(dims[0].dim_value)
    return None


def tag_fp32_nodes(proto, scopes: tuple[str, ...] = FP32_SCOPES) -> int:
    """Prefix :data:`FP32_TAG` to the names of the nodes that must stay fp32; returns how many.

    Two rules, so the tagging does not depend on how the model names things:

    - structure: a tensor read by a Softmax and by a second softmax (a Softmax node, or one
      written out as ReduceMax/Sub/Exp/ReduceSum/Div, see ``coarse.dual_softmax``) is the
      similarity of a dual softmax; both softmaxes, the Mul joining them, and the chain that
      computes the similarity (the MatMul/Einsum and the scaling/transposes before and after it)
      are tagged;
    - scope: nodes exported from a submodule whose attribute name is in ``scopes`` (the dynamo
      exporter records the module path in the ``pkg.torch.onnx.name_scopes`` metadata).
    """
    import ast

    nodes = list(proto.graph.node)
    producer = {out: n for n in nodes for out in n.output}
    consumers: dict[str, list] = {}
    for n in nodes:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    passthrough = {"Div", "Mul", "Transpose", "Reshape", "Cast", "Squeeze", "Unsqueeze"}
    products = {"MatMul", "Einsum", "Gemm"}
    chosen: set[int] = set()

    def walk_up(name: str, through: set[str], stop_at: set[str]) -> None:
        node = producer.get(name)
        while node is not None and node.op_type in through | stop_at:
            chosen.add(id(node))
            if node.op_type in stop_at:
                for inp in node.input:  # the scaled features feeding the product
                    walk_up(inp, through, set())
                return
            data = [i for i in node.input if i in producer and producer[i].op_type != "Constant"]
            node = producer.get(data[0]) if data else None

    softmax_parts = {"Softmax", "ReduceMax", "Sub", "Exp", "ReduceSum", "Div"}

    def walk_down(node) -> None:
        """Tag a softmax's nodes from the similarity down to the Mul that joins both softmaxes."""
        todo = [node]
        while todo:
            node = todo.pop()
            if id(node) in chosen:
                continue
            chosen.add(id(node))
            if node.op_type == "Mul":
                continue
            todo.extend(c for out in node.output for c in consumers.get(out, [])
                        if c.op_type in softmax_parts | {"Mul"})

    for tensor, readers in consumers.items():
        softmaxes = [n for n in readers if n.op_type == "Softmax"]
        others = [n for n in readers if n.op_type in {"Softmax", "ReduceMax", "Sub"} and n not in softmaxes[:1]]
        if not softmaxes or not others:
            continue
        for reader in readers:
            if reader.op_type in softmax_parts:
                walk_down(reader)
        walk_up(tensor, passthrough, products)

    wanted = set(scopes)
    for node in nodes:
        meta = {p.key: p.value for p in node.metadata_props}
        try:
            path = ast.literal_eval(meta.get("pkg.torch.onnx.name_scopes", "[]"))
        except (ValueError, SyntaxError):
            continue
        if {seg for scope in path for seg in str(scope).split(".")} & wanted:
            chosen.add(id(node))

    count = 0
    for index, node in enumerate(nodes):
        if id(node) in chosen and not node.name.startswith(FP32_TAG):
            node.name = FP32_TAG + (node.name or f"{node.op_type}_{index}")
            count += 1
    return count


def read_metadata(onnx_path: str | Path) -> dict[str, str]:
    """The key/value metadata of an ONNX file (without loading its weights)."""
    import onnx

    model = onnx.load_model(str(onnx_path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def mixed_fp16(onnx_path: str | Path, out_path: str | Path) -> Path:
    """The fp32 export as a mixed-precision graph for a *strongly typed* TensorRT build
    (TensorRT 11 has no other fp16 build; 10.x builds it the same way): every operator in fp16
    except the :data:`FP32_TAG` nodes (coarse similarity and dual softmax), the model's own casts
    to fp32 and the nodes producing graph outputs, with explicit Cast nodes at the boundaries
    (onnxconverter-common's float16 converter). Inputs and outputs keep their types. Returns
    ``out_path``."""
    import warnings

    import onnx

    try:
        from onnxconverter_common.float16 import convert_float_to_float16
    except ImportError:
        raise EngineError("the fp16 graph needs onnxconverter-common (pip install -e '.[onnx]')") from None
    model = onnx.load(str(onnx_path))
    fp32_outputs = {o.name for o in model.graph.output if o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    keep = [n.name for n in model.graph.node
            if n.name.startswith(FP32_TAG)
            or (n.op_type == "Cast" and any(a.name == "to" and a.i == onnx.TensorProto.FLOAT for a in n.attribute))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "truncated to 1e-07" per tiny weight: expected in fp16
        # check_fp16_ready off: the export already holds fp16 tensors on purpose (the RoPE tables
        # the authors keep in fp16), which the converter would take for an earlier conversion
        mixed = convert_float_to_float16(model, keep_io_types=True, node_block_list=keep, check_fp16_ready=False)
    # outputs the converter left in fp16: back to fp32 through one explicit Cast each (the
    # engines and their callers read float32 keypoints and scores)
    for out in mixed.graph.output:
        if out.name in fp32_outputs and out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16:
            inner = out.name + "__fp16"
            for node in mixed.graph.node:
                node.output[:] = [inner if o == out.name else o for o in node.output]
                node.input[:] = [inner if i == out.name else i for i in node.input]
            mixed.graph.node.append(onnx.helper.make_node("Cast", [inner], [out.name], to=onnx.TensorProto.FLOAT,
                                                          name=f"output_cast_{out.name}"))
            out.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    props = {p.key: p.value for p in mixed.metadata_props}
    props[META_PRECISION] = "fp16-mixed"
    del mixed.metadata_props[:]
    for key, value in props.items():
        entry = mixed.metadata_props.add()
        entry.key, entry.value = key, value
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(mixed, str(out_path))
    return out_path


#: operators whose output type says what precision the network computes in
_COMPUTE_OPS = ("Conv", "MatMul", "Gemm", "Softmax", "LayerNormalization", "Exp")


def check_mixed_precision(onnx_path: str | Path) -> list[str]:
    """Problems of a :func:`mixed_fp16` graph, from ONNX shape inference: a compute operator
    outside the fp32 scopes that does not run in fp16, one inside them that does not run in
    fp32, or inputs / outputs whose types changed. [] when the graph is as intended."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    types = {v.name: v.type.tensor_type.elem_type for v in (*model.graph.value_info, *model.graph.input,
                                                            *model.graph.output)}
    problems = []
    for node in model.graph.node:
        if node.op_type not in _COMPUTE_OPS or not node.output:
            continue
        got = types.get(node.output[0])
        want = onnx.TensorProto.FLOAT if node.name.startswith(FP32_TAG) else onnx.TensorProto.FLOAT16
        if got != want:
            problems.append(f"{node.op_type} {node.name}: {onnx.TensorProto.DataType.Name(got or 0)}, expected "
                            f"{onnx.TensorProto.DataType.Name(want)}")
    for value in (*model.graph.input, *model.graph.output):
        if value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16:
            problems.append(f"graph {'input' if value in model.graph.input else 'output'} {value.name} is fp16")
    return problems


def check_tensorrt_compatible(onnx_path: str | Path, *, max_topk: int = TENSORRT_MAX_TOPK) -> list[str]:
    """Problems that would stop TensorRT 10 from building this ONNX file as a static engine.

    Checks: default-domain opset in TensorRT's range; only operators from
    :data:`TENSORRT10_ONNX_OPS`; no ``NonZero`` (data-dependent shape); ``TopK`` with a constant
    K <= ``max_topk`` and sorted=1; constant ``axes``/``K`` inputs where the parser needs them;
    tensor types TensorRT has; fully static input/output shapes. Returns [] when all pass.
    """
    import onnx
    from onnx import numpy_helper

    path = Path(onnx_path)
    if not path.is_file():
        raise EngineError(f"ONNX file not found: {path}")
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        raise EngineError(f"{path} is not a readable ONNX file: {exc}") from None
    problems: list[str] = []
    lo, hi = TENSORRT10_OPSET_RANGE
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx") and not lo <= imp.version <= hi:
            problems.append(f"opset {imp.version} is outside TensorRT 10's range {lo}..{hi}")

    graph = model.graph
    constants = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for attr in node.attribute:
                if attr.name == "value":
                    constants[node.output[0]] = attr.t

    def const_value(name):
        tensor = constants.get(name)
        return None if tensor is None else numpy_helper.to_array(tensor)

    def check_shape(value, kind):
        tensor_type = value.type.tensor_type
        if not tensor_type.HasField("shape"):
            problems.append(f"{kind} {value.name!r} has no static shape")
            return
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor_type.shape.dim]
        if any(not isinstance(d, int) or d <= 0 for d in dims):
            problems.append(f"{kind} {value.name!r} has dynamic shape {dims}; export with static shapes")
        if tensor_type.elem_type not in _TRT_TYPES:
            problems.append(f"{kind} {value.name!r} has data type {tensor_type.elem_type}, not supported by TensorRT")

    for value in graph.input:
        if value.name not in constants:
            check_shape(value, "input")
    for value in graph.output:
        check_shape(value, "output")

    def walk(nodes, where):
        for node in nodes:
            label = f"{node.op_type} node {node.name or '?'}{where}"
            if node.domain not in ("", "ai.onnx"):
                problems.append(f"{label}: custom domain {node.domain!r} needs a TensorRT plugin")
                continue
            if node.op_type not in TENSORRT10_ONNX_OPS:
                problems.append(f"{label}: operator {node.op_type} is not supported by TensorRT 10")
            if node.op_type == "NonZero":
                problems.append(f"{label}: NonZero has a data-dependent output shape; use a fixed-K top-k")
            for index in _CONSTANT_INPUTS.get(node.op_type, ()):
                if index < len(node.input) and node.input[index] and node.input[index] not in constants:
                    problems.append(f"{label}: input {index} must be a constant/initializer for TensorRT")
            if node.op_type == "TopK":
                k = const_value(node.input[1]) if len(node.input) > 1 else None
                if k is not None and int(k.reshape(-1)[0]) > max_topk:
                    problems.append(f"{label}: K={int(k.reshape(-1)[0])} exceeds TensorRT's TopK limit {max_topk}")
                for attr in node.attribute:
                    if attr.name == "sorted" and attr.i != 1:
                        problems.append(f"{label}: TensorRT needs sorted=1")
            if node.op_type == "Cast":
                for attr in node.attribute:
                    if attr.name == "to" and attr.i not in _TRT_TYPES:
                        problems.append(f"{label}: cast to data type {attr.i}, not supported by TensorRT")
            for attr in node.attribute:  # If/Loop/Scan bodies
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g.node, f" (in {node.op_type} {node.name})")
                elif attr.type == onnx.AttributeProto.GRAPHS:
                    for sub in attr.graphs:
                        walk(sub.node, f" (in {node.op_type} {node.name})")

    walk(graph.node, "")
    for function in model.functions:  # local functions the parser would have to inline
        walk(function.node, f" (in function {function.name})")
    problems += _float_only_problems(model)
    return problems


#: operators whose TensorRT importer takes floating-point inputs only (an integer Clip, e.g. from
#: ``torch.clamp`` on indices, fails to parse)
_FLOAT_ONLY_OPS = ("Clip",)


def _float_only_problems(model) -> list[str]:
    """Float-only operators fed integer tensors, found by ONNX shape (type) inference."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # inference is best effort; the parser would report what it cannot type
        return []
    graph = inferred.graph
    dtypes = {v.name: v.type.tensor_type.elem_type for v in [*graph.value_info, *graph.input, *graph.output]}
    dtypes.update({init.name: init.data_type for init in graph.initializer})
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}
    return [
        f"{node.op_type} node {node.name or '?'}: input of data type {dtypes[node.input[0]]}; "
        f"TensorRT's {node.op_type} takes float tensors only (clamp indices with Where)"
        for node in graph.node
        if node.op_type in _FLOAT_ONLY_OPS and node.input and dtypes.get(node.input[0], onnx.TensorProto.FLOAT) not in floats
    ]


def operator_counts(onnx_path: str | Path) -> dict[str, int]:
    """How many nodes of each operator type the top-level graph has (for reports)."""
    import onnx

    model = onnx.load_model(str(onnx_path), load_external_data=False)
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))
