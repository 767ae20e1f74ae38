"""Fixed-shape ONNX export of RoMa's dense network (``RoMa.dense_network``: both passes, encoder
and decoder, to the final warp and certainty), and what it is made of.

What does not export, and stays outside the graph: the antialiased bicubic resize of the inputs
(``aten::_upsample_bicubic2d_aa`` has no ONNX form; the engine takes the resized images) and the
sampling (``torch.multinomial`` without replacement and the KDE run on the warp afterwards).
Inside the graph one operator has no standard ONNX form: the GP's matrix inverse
(``torch.linalg.inv``), exported as ONNX Runtime's contrib operator ``com.microsoft::Inverse``.
ONNX Runtime runs the result at parity; TensorRT's ONNX parser has no ``Inverse``, so a TensorRT
build needs the graph cut at the GP (docs/MODELS.md).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

#: the one non-standard operator of the export
INVERSE = "com.microsoft::Inverse"
OPSET = 20


class _Dense:
    """Wraps ``RoMa.dense_network`` as a module for the tracer (kept in eval mode)."""

    def __new__(cls, model):
        import torch

        class Dense(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, a_coarse, b_coarse, a_fine, b_fine):
                return self.model.dense_network(a_coarse, b_coarse, a_fine, b_fine)

        return Dense().eval()


def export_dense_onnx(model, path, opset: int = OPSET) -> dict[str, int]:
    """Export ``model.dense_network`` at its settings' sizes to ``path``; returns the operator
    counts (``domain::op``). The model is left in eval mode (the exporter restores the wrapper's
    mode, which would otherwise switch BatchNorm to batch statistics)."""
    import onnx
    import torch
    from torch.onnx import register_custom_op_symbolic, unregister_custom_op_symbolic

    s = model.settings
    c, f = s.coarse_res, s.upsample_res or s.coarse_res
    inputs = (torch.zeros(1, 3, c, c), torch.zeros(1, 3, c, c), torch.zeros(1, 3, f, f), torch.zeros(1, 3, f, f))
    register_custom_op_symbolic("aten::linalg_inv", lambda g, x: g.op(INVERSE, x).setType(x.type()), opset)
    try:
        with torch.no_grad():
            torch.onnx.export(_Dense(model), inputs, str(path), opset_version=opset, dynamo=False,
                              input_names=["a_coarse", "b_coarse", "a_fine", "b_fine"],
                              output_names=["warp", "certainty"])
    finally:
        unregister_custom_op_symbolic("aten::linalg_inv", opset)
        model.eval()
    graph = onnx.load(str(Path(path)), load_external_data=False).graph
    return dict(Counter(f"{n.domain or 'ai.onnx'}::{n.op_type}" for n in graph.node))
