#!/usr/bin/env python3
"""Regenerate the MatchAnything-RoMa reference pack (test/data/roma_reference) from the authors' own code.

Environment:
  MATCHANYTHING_SRC  root of a checked-out copy of the authors' Space code that contains
                     imcui/hloc/matchers/matchanything.py, imcui/hloc/match_dense.py,
                     imcui/hloc/extract_features.py and imcui/third_party/MatchAnything/
                     (`git archive 6f13a83 imcui` of github:MathiasVanGompel/MatchAnything; use that
                     commit only: it is the authors' ("ADD: MatchAnything", hexingyi)).
  ROADSCENE_DIR      optional, RoadScene dev pairs (visible/, thermal/); default: the first of
                     <repo>/../shared/data/roadscene_dev and <repo>/shared/data/roadscene_dev.
  PACK_OUT           optional output folder; default <repo>/test/data/roma_reference.
  NUM_THREADS        optional torch thread count (default 2).
  Python deps (a venv of their own): torch, torchvision (matching torch), numpy, opencv, pillow,
  kornia, einops, loguru, yacs.

Nothing of the authors' code is copied here: their modules and functions are imported / executed from
MATCHANYTHING_SRC at run time. Stand-ins (each listed in the pack's README and manifest):
  (a) the hloc package __init__ (DEVICE='cpu', logger; the real one writes log files);
  (b) PL_LoFTR (pytorch_lightning / pynvml not needed): it does what PL_LoFTR.__init__ does for
      matchanything_roma -- MatchAnything_Model(lower_config(cfg)['roma'], test_mode=True) +
      load_state_dict(ckpt['state_dict'], strict=False) -- with the seeded checkpoint, a strict key check,
      and the one deliberate config change (ROMA.TEST_TIME.COARSE_RES / UPSAMPLE_RES, see below);
  (c) torch.hub.load_state_dict_from_url (the DINOv2 ViT-L/14 download) -> the seeded DINOv2 state dict;
  (d) torchvision.models.vgg19_bn(pretrained=True) -> weights=None (no download; the checkpoint
      overwrites every VGG tensor);
  (e) modules that the authors' training-only imports need at import time and that are not installed:
      h5py, tqdm, matplotlib(.pyplot) (empty modules);
  (f) if torchvision's C extension cannot load (PyPI torchvision wheels are CUDA builds; with a CPU-only
      torch its _C.so misses libtorch_cuda), the schemas of torchvision::nms / qnms are declared so that
      `import torchvision` works; only pure-Python torchvision code is used (transforms.Resize,
      Normalize, models.vgg19_bn);
  (g) match_dense.py / extract_features.py are not imported whole (h5py, scipy, pycolmap, ...): the
      functions match_images, scale_keypoints and resize_image are taken from their source (ast) and run.
Weights: every tensor is matchanything_ros.models.roma.random_weights.seeded_tensor(name, shape, dtype,
SEED) under the names of the published files (see manifest["weights"]), except the overrides: the running
statistics of decoder.proj.16.1 (the BatchNorm after the 1x1 projection of the DINOv2 tokens) are set from one
forward of the first case so that the coarse features are standardised per channel (calibrate(); stored in the
pack as weights_override.<checkpoint name>, see manifest["weights"]["overrides"]).
"""
import ast
import importlib.util
import json
import logging
import math
import os
import sys
import time
import types
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import PIL
import PIL.Image
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
SRC = Path(os.environ["MATCHANYTHING_SRC"]).resolve()


def _default_data():
    for c in (REPO.parent / "shared" / "data" / "roadscene_dev", REPO / "shared" / "data" / "roadscene_dev"):
        if c.exists():
            return c
    return REPO.parent / "shared" / "data" / "roadscene_dev"


DATA = Path(os.environ.get("ROADSCENE_DIR", str(_default_data()))).resolve()
OUT = Path(os.environ.get("PACK_OUT", str(REPO / "test" / "data" / "roma_reference"))).resolve()
NUM_THREADS = int(os.environ.get("NUM_THREADS", "2"))
torch.set_num_threads(NUM_THREADS)

SEED = 20250707  # weights: seeded_tensor(name, shape, dtype, SEED)
SAMPLE_SEED = 20250707  # torch.manual_seed right before RegressionMatcher.sample
COARSE_RES = (112, 112)  # Space: (560, 560); divisible by 14 (DINOv2 patch) and 8
UPSAMPLE_RES = (224, 224)  # Space: (864, 864); divisible by 8
SMALL_WIDTH = 160  # the "original" images of the pack: width 160, aspect kept, cv2.INTER_AREA
IMAGES = {  # name: (file under ROADSCENE_DIR, rotation in degrees applied at full size before downsizing)
    "vis00006": ("visible/FLIR_00006.jpg", 0.0),
    "th00006": ("thermal/FLIR_00006.jpg", 0.0),
    "vis00211": ("visible/FLIR_00211.jpg", 0.0),
    "th00211": ("thermal/FLIR_00211.jpg", 0.0),
    "th00006_rot30": ("thermal/FLIR_00006.jpg", 30.0),
}
CASES = [("flir00006", "vis00006", "th00006"), ("flir00211", "vis00211", "th00211"),
         ("flir00006_rot30", "vis00006", "th00006_rot30")]
DINO_URL = "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth"

ROOT = SRC / "imcui"
MA = ROOT / "third_party" / "MatchAnything"
ROMA = MA / "third_party" / "ROMA"
WRAPPER = ROOT / "hloc" / "matchers" / "matchanything.py"
MATCH_DENSE = ROOT / "hloc" / "match_dense.py"
EXTRACT = ROOT / "hloc" / "extract_features.py"
BASE_MODEL = ROOT / "hloc" / "utils" / "base_model.py"
for p in (MA, ROMA, WRAPPER, MATCH_DENSE, EXTRACT, BASE_MODEL):
    assert p.exists(), f"MATCHANYTHING_SRC layout not recognised: missing {p}"
sys.path[:0] = [str(MA.parent), str(MA)]

# seeded weights (our repo's module, loaded by path: it needs only torch)
_rw_spec = importlib.util.spec_from_file_location(
    "_roma_random_weights", REPO / "matchanything_ros" / "models" / "roma" / "random_weights.py")
random_weights = importlib.util.module_from_spec(_rw_spec)
_rw_spec.loader.exec_module(random_weights)

STAND_INS = []


# ----------------------------------------------------------------------------- (f) torchvision without its C ops
def _torchvision_ops_stand_in():
    spec = importlib.util.find_spec("torchvision")
    assert spec is not None, "torchvision is required"
    so = next(iter(sorted(Path(spec.origin).parent.glob("_C*.so"))), None)
    try:
        if so is None:
            raise OSError("no _C extension")
        torch.ops.load_library(str(so))
        return
    except (OSError, RuntimeError) as e:
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        globals()["_TV_LIB"] = lib
        STAND_INS.append("torchvision C extension unavailable (%s): declared torchvision::nms/qnms schemas so "
                         "`import torchvision` works; only pure-Python torchvision code is used" % str(e).split("\n")[0][:120])


_torchvision_ops_stand_in()
import torchvision  # noqa: E402
import torchvision.models  # noqa: E402
import torchvision.transforms.functional as TVF  # noqa: E402

# ----------------------------------------------------------------------------- (e) missing import-time-only modules
for _name in ("h5py", "tqdm", "matplotlib"):
    if importlib.util.find_spec(_name) is None:
        _m = types.ModuleType(_name)
        _m.__path__ = []
        if _name == "tqdm":
            _m.tqdm = lambda it=None, *a, **k: it
        sys.modules[_name] = _m
        if _name == "matplotlib":
            sys.modules["matplotlib.pyplot"] = _m.pyplot = types.ModuleType("matplotlib.pyplot")
        STAND_INS.append(f"empty module {_name} (imported by the authors' training-only modules, unused)")

from loguru import logger as _loguru  # noqa: E402
_loguru.remove()
from yacs.config import CfgNode  # noqa: E402


def lower_config(c):  # == src.utils.misc.lower_config (that module needs joblib)
    return {k.lower(): lower_config(v) for k, v in c.items()} if isinstance(c, CfgNode) else c


def _to_plain(c):
    if isinstance(c, CfgNode) or isinstance(c, dict):
        return {k: _to_plain(v) for k, v in c.items()}
    if isinstance(c, (tuple, list)):
        return [_to_plain(v) for v in c]
    return c


# ----------------------------------------------------------------------------- (c) DINOv2 download, (d) VGG download
WEIGHTS_LOG = {}


def _hub_stand_in(url, *args, **kwargs):
    assert url == DINO_URL, url
    from roma.models.transformer import vit_large  # the authors' DINOv2 ViT (roma/models/transformer/dinov2.py)
    # names/shapes only (its own init is discarded); kwargs as in roma/models/encoders.py CNNandDinov2
    vit = vit_large(img_size=518, patch_size=14, init_values=1.0, ffn_layer="mlp", block_chunks=0)
    template = {k: torch.empty(0).new_empty(v.shape, dtype=v.dtype, device="meta") for k, v in vit.state_dict().items()}
    del vit
    sd = random_weights.seeded_state_dict(template, SEED)
    WEIGHTS_LOG["dinov2"] = {"n_tensors": len(sd), "n_params": int(sum(v.numel() for v in sd.values())),
                             "keys_first": list(sd)[:6], "keys_last": list(sd)[-3:]}
    return sd


torch.hub.load_state_dict_from_url = _hub_stand_in
STAND_INS.append("torch.hub.load_state_dict_from_url(DINOv2 ViT-L/14 url) -> seeded state dict with the file's names")

_vgg19_bn = torchvision.models.vgg19_bn


def _vgg19_bn_no_download(*args, pretrained=False, **kwargs):
    WEIGHTS_LOG.setdefault("vgg19_bn_pretrained_arg", []).append(bool(pretrained))
    return _vgg19_bn(*args, weights=None, **kwargs)


torchvision.models.vgg19_bn = _vgg19_bn_no_download
STAND_INS.append("torchvision.models.vgg19_bn(pretrained=True) -> weights=None (the checkpoint overwrites all of it)")


# ----------------------------------------------------------------------------- (b) PL_LoFTR, (a) hloc package
CONFIGS = {}


class PL_LoFTR:  # stand-in for MatchAnything.src.lightning.lightning_loftr.PL_LoFTR (test_mode path, roma)
    def __init__(self, config, pretrained_ckpt=None, profiler=None, dump_dir=None, test_mode=False,
                 baseline_config=None):
        from third_party.ROMA.roma.matchanything_roma_model import MatchAnything_Model  # authors' model
        assert config.METHOD == "matchanything_roma" and test_mode
        CONFIGS["space"] = config.clone()
        config.ROMA.TEST_TIME.COARSE_RES = COARSE_RES  # the one deliberate change (size / test speed)
        config.ROMA.TEST_TIME.UPSAMPLE_RES = UPSAMPLE_RES
        CONFIGS["used"] = config.clone()
        CONFIGS["wrapper_ckpt_path_ignored"] = Path(str(pretrained_ckpt)).name
        self.config = config
        self.matcher = MatchAnything_Model(config=lower_config(config)["roma"], test_mode=test_mode)
        # the published checkpoint: {'state_dict': {'matcher.model.<name>': tensor}}
        template = {"matcher." + k: v for k, v in self.matcher.state_dict().items()}
        sd = random_weights.seeded_state_dict(template, SEED)
        WEIGHTS_LOG["checkpoint"] = {"n_tensors": len(sd), "n_params": int(sum(v.numel() for v in sd.values())),
                                     "keys_first": list(sd)[:4], "keys_last": list(sd)[-3:]}
        res = self.matcher.load_state_dict(sd, strict=False)  # MatchAnything_Model strips 'matcher.'
        assert not res.missing_keys and not res.unexpected_keys, res
        WEIGHTS_LOG["checkpoint"]["strict_key_match"] = True


def _pkg(name, **attrs):
    m = types.ModuleType(name)
    m.__path__ = []
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


_pkg("imcui")
_pkg("imcui.hloc", DEVICE="cpu", MODEL_REPO_ID="", logger=logging.getLogger("hloc"))
_pkg("imcui.hloc.utils")
_pkg("imcui.hloc.matchers")
if importlib.util.find_spec("huggingface_hub") is None:  # base_model imports hf_hub_download (unused)
    sys.modules["huggingface_hub"] = types.SimpleNamespace(hf_hub_download=None)
    STAND_INS.append("huggingface_hub.hf_hub_download = None (imported by hloc base_model, unused)")


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


_load("imcui.hloc.utils.base_model", BASE_MODEL)
_pl = types.ModuleType("MatchAnything.src.lightning.lightning_loftr")
_pl.PL_LoFTR = PL_LoFTR
sys.modules["MatchAnything.src.lightning.lightning_loftr"] = _pl
wrapper_mod = _load("imcui.hloc.matchers.matchanything", WRAPPER)


# ----------------------------------------------------------------------------- (g) match_dense functions
def _exec_functions(path, names, glb):
    tree = ast.parse(path.read_text())
    body = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in names]
    assert {n.name for n in body} == set(names), (path, names)
    exec(compile(ast.Module(body=body, type_ignores=[]), str(path), "exec"), glb)
    return glb


def _literal_assign(path, name):
    tree = ast.parse(path.read_text())
    for n in tree.body:
        if isinstance(n, ast.Assign) and any(getattr(t, "id", None) == name for t in n.targets):
            return ast.literal_eval(n.value)
    raise KeyError(name)


TVF_RESIZE_CALLS = []


class _TVFRecorder:  # the real torchvision.transforms.functional.resize, recording its sizes
    @staticmethod
    def resize(image, size, *a, **k):
        out = TVF.resize(image, size, *a, **k)
        TVF_RESIZE_CALLS.append((list(image.shape), list(size), bool(torch.equal(out, image)) if out.shape == image.shape else False))
        return out


_fx = _exec_functions(EXTRACT, ["resize_image"], {"cv2": cv2, "np": np, "PIL": PIL})
_md = _exec_functions(MATCH_DENSE, ["match_images", "scale_keypoints"],
                      {"np": np, "torch": torch, "cv2": cv2, "F": _TVFRecorder, "SimpleNamespace": SimpleNamespace,
                       "resize_image": _fx["resize_image"]})
match_images = _md["match_images"]
_confs = _literal_assign(MATCH_DENSE, "confs")["matchanything_roma"]
MODEL_CONF, PREPROC_CONF = dict(_confs["model"]), dict(_confs["preprocessing"])


# ----------------------------------------------------------------------------- images
def make_image(name):
    rel, rot = IMAGES[name]
    bgr = cv2.imread(str(DATA / rel), cv2.IMREAD_COLOR)
    assert bgr is not None, DATA / rel
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # the Space (gradio) hands RGB uint8 arrays to match_images
    h, w = rgb.shape[:2]
    meta = {"file": rel, "full_size_wh": [w, h], "rotation_deg": rot}
    if rot:
        M = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), rot, 1.0)
        rgb = cv2.warpAffine(rgb, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        meta["rotation_rule"] = "cv2.getRotationMatrix2D(((w-1)/2,(h-1)/2), deg, 1); warpAffine INTER_LINEAR, zero border, full size, before downsizing"
        meta["rotation_matrix_full_size"] = M.tolist()
    size = (SMALL_WIDTH, int(round(h * SMALL_WIDTH / w)))
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    meta["small_size_wh"] = list(size)
    meta["downsize_rule"] = f"cv2.resize(rgb_full, (160, round(h*160/w)), interpolation=cv2.INTER_AREA)"
    return np.ascontiguousarray(small), meta


# ----------------------------------------------------------------------------- one run
def run_case(w, im0, im1, double=False):
    net = w.net  # MatchAnything_Model
    rm = net.model  # RegressionMatcher
    rec = {"fs": [], "mn": []}
    orig_fs, orig_stm, orig_sample = rm.forward_symmetric, rm.self_inference_time_match, rm.sample

    def fs(batch, batched=True, upsample=False, scale_factor=1):
        call = {"upsample": upsample, "scale_factor": float(scale_factor),
                "im_A": batch["im_A"].detach().clone(), "im_B": batch["im_B"].detach().clone()}
        out = orig_fs(batch, batched=batched, upsample=upsample, scale_factor=scale_factor)
        call["corresps"] = {s: {k: v.detach().clone() for k, v in d.items()} for s, d in out.items()}
        rec["fs"].append(call)
        return out

    def stm(im_A_org, im_B_org, *a, **k):
        rec["stm_in"] = (tuple(im_A_org.shape), tuple(im_B_org.shape), str(im_A_org.dtype), k)
        if double:
            im_A_org, im_B_org = im_A_org.to(torch.float64), im_B_org.to(torch.float64)
        t0 = time.perf_counter()
        warp, cert = orig_stm(im_A_org, im_B_org, *a, **k)
        rec["t_network"] = time.perf_counter() - t0
        rec["warp"], rec["certainty"] = warp.detach().clone(), cert.detach().clone()
        return warp, cert

    def sample(matches, certainty, num=10000):
        real_mn = torch.multinomial

        def mn(*a, **k):
            r = real_mn(*a, **k)
            rec["mn"].append(r.clone())
            return r

        m, c = matches, certainty
        if double:  # sample the fp64 outputs through the fp32 RNG path (exponential_ differs by dtype)
            m, c = matches.to(torch.float32), certainty.to(torch.float32)
        torch.multinomial = mn
        try:
            t0 = time.perf_counter()
            torch.manual_seed(SAMPLE_SEED)
            out = orig_sample(m, c, num=num)
            rec["t_sample"] = time.perf_counter() - t0
        finally:
            torch.multinomial = real_mn
        if double:
            mn64 = []
            torch.multinomial = lambda *a, **k: mn64.append(real_mn(*a, **k)) or mn64[-1]
            try:
                torch.manual_seed(SAMPLE_SEED)
                orig_sample(matches, certainty, num=num)
            finally:
                torch.multinomial = real_mn
            rec["mn_fp64_path"] = [x.clone() for x in mn64]
        rec["sample_out"] = (out[0].detach().clone(), out[1].detach().clone())
        return out[0].to(matches.dtype), out[1].to(certainty.dtype)

    rm.forward_symmetric, rm.self_inference_time_match, rm.sample = fs, stm, sample
    hooks = [net.register_forward_hook(lambda mod, args, out: rec.update(data=dict(out))),
             rm.encoder.register_forward_hook(lambda mod, args, out: rec.setdefault("enc", []).append({s: v.detach().clone() for s, v in out.items()})),
             rm.decoder.gps["16"].register_forward_hook(lambda mod, args, out: rec.setdefault("gp16", []).append(out.detach().clone())),
             rm.decoder.proj["16"].register_forward_hook(lambda mod, args, out: rec.setdefault("proj16", []).append(out.detach().clone()))]
    _float = torch.Tensor.float
    if double:
        # the authors' code calls .float() on intermediates (GP inputs, refiner outputs, deltas); in the float64
        # run those calls keep float64 tensors, and the default dtype (linspace grids, eye, zeros) is float64
        torch.Tensor.float = lambda self, *a, **k: self if self.dtype == torch.float64 else _float(self, *a, **k)
        torch.set_default_dtype(torch.float64)
    try:
        t0 = time.perf_counter()
        with torch.no_grad():
            pred = match_images(w, im0, im1, PREPROC_CONF, device="cpu")
        rec["t_total"] = time.perf_counter() - t0
    finally:
        torch.Tensor.float = _float
        torch.set_default_dtype(torch.float32)
        for h in hooks:
            h.remove()
        del rm.forward_symmetric, rm.self_inference_time_match, rm.sample
    assert [c["upsample"] for c in rec["fs"]] == [False, True], [c["upsample"] for c in rec["fs"]]
    return rec, pred


def cls_to_flow(gm_cls):
    from roma.utils.utils import cls_to_flow_refine  # authors' function
    return cls_to_flow_refine(gm_cls).permute(0, 3, 1, 2)


def collect(rec, pred, net):
    """Arrays of one run (float64 tensors kept as float64 here; the caller chooses storage dtypes)."""
    c0, c1 = rec["fs"]
    cs = c0["corresps"]
    warp, cert = rec["warp"], rec["certainty"]
    H, W2, _ = warp.shape
    mn = rec["mn"]
    assert len(mn) == 2, "sampling fell into a corner case"
    idx1 = mn[0]
    sample_idx = idx1[mn[1]]
    m_s, c_s = rec["sample_out"]
    flat = warp.reshape(-1, 4).to(m_s.dtype)
    assert torch.equal(flat[sample_idx], m_s)
    d = rec["data"]
    # forward_inference's keep mask, recomputed the same way and checked against its output
    H_A, W_A = rec["stm_in"][0][-2:]  # resize_by_stretch: the 640x480 tensor's own size (A and B alike here)
    assert tuple(rec["stm_in"][1][-2:]) == (H_A, W_A)
    kA, kB = net.model.to_pixel_coordinates(m_s.to(d["mkpts0_f"].dtype), H_A, W_A, H_A, W_A)
    keep = (c_s > net.config["match_thresh"]) & (kA[:, 0] <= W_A - 1) & (kA[:, 1] <= H_A - 1) & (kB[:, 0] <= W_A - 1) & (kB[:, 1] <= H_A - 1)
    assert torch.equal(kA[keep], d["mkpts0_f"]) and torch.equal(kB[keep], d["mkpts1_f"]), "keep mask mismatch"
    enc0 = rec["enc"][0]  # first-pass encoder pyramid of cat(im_A, im_B)
    assert len(rec["enc"]) == 2 and 16 in enc0 and 16 not in rec["enc"][1] and len(rec["gp16"]) == 1
    out = {
        "dino16_c0_31": enc0[16][:, :32], "vgg8_c0_15": enc0[8][:, :16], "gp16_c0_31": rec["gp16"][0][:, :32],
        "net_coarse_A": c0["im_A"][0], "net_coarse_B": c0["im_B"][0],
        "net_up_A": c1["im_A"][0], "net_up_B": c1["im_B"][0],
        "s16_gm_flow": cls_to_flow(cs[16]["gm_cls"]), "s16_gm_certainty": cs[16]["gm_certainty"],
        "s16_flow": cs[16]["flow"], "s16_certainty": cs[16]["certainty"],
        "s1_flow": cs[1]["flow"], "s1_certainty": cs[1]["certainty"],
        "up_s1_flow": c1["corresps"][1]["flow"], "up_s1_certainty": c1["corresps"][1]["certainty"],
        "warp": warp, "certainty": cert,
        "sample_idx_stage1": idx1.to(torch.int32), "sample_idx": sample_idx.to(torch.int32),
        "sample_conf": c_s, "certainty_at_samples": cert.reshape(-1)[sample_idx], "keep": keep,
        "mkpts0_f": d["mkpts0_f"], "mkpts1_f": d["mkpts1_f"], "mconf": d["mconf"],
        "mkpts0": torch.from_numpy(np.asarray(pred["keypoints0_orig"])), "mkpts1": torch.from_numpy(np.asarray(pred["keypoints1_orig"])),
        "_scale0": [float(x) for x in np.array(pred["original_size0"]) / np.array(pred["image0"].shape[-2:][::-1])],
        "_scale1": [float(x) for x in np.array(pred["original_size1"]) / np.array(pred["image1"].shape[-2:][::-1])],
    }
    assert np.array_equal(np.asarray(pred["keypoints0"]), d["mkpts0_f"].numpy())
    meta = {
        "match_images_input_shape0": list(pred["image0"].shape), "match_images_input_shape1": list(pred["image1"].shape),
        "original_size0_wh": [int(x) for x in pred["original_size0"]], "original_size1_wh": [int(x) for x in pred["original_size1"]],
        "scale0_xy_orig_over_640x480": [float(x) for x in np.array(pred["original_size0"]) / np.array([640, 480])],
        "scale1_xy_orig_over_640x480": [float(x) for x in np.array(pred["original_size1"]) / np.array([640, 480])],
        "self_inference_time_match_input": [list(rec["stm_in"][0]), list(rec["stm_in"][1]), rec["stm_in"][2]],
        "upsample_scale_factor": c1["scale_factor"],
        "n_sampled": int(len(sample_idx)), "n_stage1": int(len(idx1)), "n_kept": int(keep.sum()),
        "t_network_s": rec["t_network"], "t_sample_s": rec["t_sample"], "t_match_images_s": rec["t_total"],
    }
    meta["collapse"] = collapse_diagnostics(rec)
    return out, meta


def _tok_stats(t):
    """Token diversity of a (B, C, H, W) map: common = mean over positions; cosine between positions."""
    tok = t.double().flatten(2).transpose(1, 2)  # B, N, C
    common = tok.mean(1, keepdim=True)
    tn = torch.nn.functional.normalize(tok, dim=-1)
    cs = tn @ tn.transpose(1, 2)
    off = cs[:, ~torch.eye(cs.shape[1], dtype=torch.bool)]
    return {"position_std": float((tok - common).pow(2).mean().sqrt()), "common_rms": float(common.pow(2).mean().sqrt()),
            "pairwise_cosine_min": float(off.min()), "pairwise_cosine_mean": float(off.mean())}


def collapse_diagnostics(rec):
    """Is the coarse stage input-dependent? Token diversity of the DINOv2 output, of proj16 (its 1x1 conv +
    BatchNorm, the decoder's coarse features of the query images cat(A, B)), of the GP posterior and of the
    classifier logits; the classifier's argmax (anchor index = 64*row + col over a 64x64 grid of image-B /
    image-A positions) over the 8x8 positions per direction (batch 0 = A->B, 1 = B->A)."""
    cs = rec["fs"][0]["corresps"]
    cls = cs[16]["gm_cls"].double()
    p = cls.softmax(1)
    am = p.argmax(1)  # B, H, W
    top2 = cls.topk(2, dim=1).values
    gap = top2[:, 0] - top2[:, 1]  # an implementation's argmax can differ from this one only where the gap is ~ its rounding
    flow = cls_to_flow(cs[16]["gm_cls"]).double()
    return {"dino16_tokens": _tok_stats(rec["enc"][0][16]), "proj16_features_query": _tok_stats(rec["proj16"][0]),
            "gp16_posterior": _tok_stats(rec["gp16"][0]),
            "gm_cls_logits": {**_tok_stats(cls), "std_over_classes_mean": float(cls.std(1).mean())},
            "gm_cls_softmax_max_mean": float(p.max(1).values.mean()),
            "gm_cls_top1_minus_top2_logit_min": float(gap.min()), "gm_cls_top1_minus_top2_logit_median": float(gap.median()),
            "gm_cls_argmax_unique_per_batch": [int(torch.unique(am[b]).numel()) for b in range(am.shape[0])],
            "gm_cls_argmax_col_row_std_per_batch": [[float((am[b] % 64).double().std()), float((am[b] // 64).double().std())] for b in range(am.shape[0])],
            "s16_gm_flow_std_xy_per_batch": [[float(flow[b, 0].std()), float(flow[b, 1].std())] for b in range(flow.shape[0])]}


# ----------------------------------------------------------------------------- weight overrides
#: checkpoint-layout names of the tensors set from data (stored in the pack as weights_override.<name>)
OVERRIDE_BN = "matcher.model.decoder.proj.16.1"  # BatchNorm2d after the 1x1 conv that projects the DINOv2 tokens
OVERRIDE_RULE = (
    "one fp32 forward of the first case (flir00006: A = vis00006, B = th00006) through the whole Space pipeline with the seeded "
    "recipe alone; y = proj16's Conv2d (decoder.proj.16.0) applied to the DINOv2 tokens of the batch cat(A, B) (2 x 1024 x 8 x 8, "
    "the first-pass encoder's feature_pyramid[16]); running_mean = y.mean over (batch, h, w), running_var = y.var over (batch, h, w) "
    "with unbiased=False, both computed in float64 and stored as float32 (the model's dtype). In eval mode proj16 then "
    "standardises the projected coarse features per channel (before the seeded BN affine 1 + 0.1 N, 0.02 N). Without it the "
    "token-independent part of the DINOv2 output (flir00006, proj16's output with the recipe's statistics: common rms 1.09 vs per-position std 0.25) "
    "dominates the coarse classifier, whose argmax then takes 2-7 of 4096 anchors over the 64 positions")


def calibrate(w, images):
    """Set the override tensors (see OVERRIDE_RULE) in the authors' model; returns {checkpoint name: float32 array}
    and the collapse diagnostics of the calibration run (the recipe without the overrides)."""
    net = w.net
    case, a, b = CASES[0]
    rec, _ = run_case(w, images[a], images[b])
    before = collapse_diagnostics(rec)
    proj = net.model.decoder.proj["16"]
    with torch.no_grad():
        y = proj[0](rec["enc"][0][16]).double()
    values = {OVERRIDE_BN + ".running_mean": y.mean((0, 2, 3)).float(), OVERRIDE_BN + ".running_var": y.var((0, 2, 3), unbiased=False).float()}
    state = net.state_dict()  # keys without 'matcher.' (MatchAnything_Model's own), tensors share storage
    for name, v in values.items():
        key = name[len("matcher."):]
        assert state[key].shape == v.shape and state[key].dtype == v.dtype, key
        state[key].copy_(v)
    assert torch.equal(proj[1].running_mean, values[OVERRIDE_BN + ".running_mean"])
    return {k: v.numpy().copy() for k, v in values.items()}, before


def stats(out, net):
    """Degeneracy diagnostics of one fp32 run."""
    cert = out["certainty"].double()
    warp = out["warp"].double()
    W = warp.shape[1] // 2
    pred = torch.cat((warp[:, :W, 2:], warp[:, W:, :2]), dim=1)
    s16 = out["s16_gm_flow"]
    s = {
        "certainty_mean": float(cert.mean()), "certainty_median": float(cert.median()),
        "certainty_frac_gt_0.05": float((cert > 0.05).double().mean()),
        "certainty_frac_lt_1e-3": float((cert < 1e-3).double().mean()),
        "certainty_frac_gt_0.999": float((cert > 0.999).double().mean()),
        "certainty_frac_exactly_0": float((cert == 0).double().mean()),
        "warp_frac_clamped(|coord|==1)": float((pred.abs() >= 1).any(-1).double().mean()),
        "warp_pred_std_xy": [float(pred[..., 0].std()), float(pred[..., 1].std())],
        "s1_certainty_logit_mean_std": [float(out["s1_certainty"].mean()), float(out["s1_certainty"].std())],
        "s16_gm_flow_std_xy": [float(s16[:, 0].std()), float(s16[:, 1].std())],
        "s16_certainty_logit_mean_std": [float(out["s16_certainty"].mean()), float(out["s16_certainty"].std())],
        "mkpts0_std_xy": [float(x) for x in out["mkpts0_f"].double().std(0)],
        "mkpts1_std_xy": [float(x) for x in out["mkpts1_f"].double().std(0)],
        "A_to_B_target_px_mean_std_640x480": [[float(x) for x in (pred[:, :W].reshape(-1, 2).mean(0) + 1) * torch.tensor([320.0, 240.0], dtype=torch.float64)],
                                              [float(x) for x in pred[:, :W].reshape(-1, 2).std(0) * torch.tensor([320.0, 240.0], dtype=torch.float64)]],
        "B_to_A_target_px_mean_std_640x480": [[float(x) for x in (pred[:, W:].reshape(-1, 2).mean(0) + 1) * torch.tensor([320.0, 240.0], dtype=torch.float64)],
                                              [float(x) for x in pred[:, W:].reshape(-1, 2).std(0) * torch.tensor([320.0, 240.0], dtype=torch.float64)]],
        "certainty_min_max": [float(cert.min()), float(cert.max())],
        "n_unique_sampled_cells": int(torch.unique(out["sample_idx"]).numel()),
        "frac_sampled_with_conf_1": float((out["sample_conf"] == 1).double().mean()),
    }
    return s


def noise(o32, o64):
    def mx(a, b):
        d = (a.double() - b.double()).abs()
        return {"max_abs": float(d.max()), "median_abs": float(d.median()), "p99_abs": float(torch.quantile(d.flatten()[:2_000_000], 0.99))}

    W = o32["warp"].shape[1] // 2
    r = {k: mx(o32[k], o64[k]) for k in ("net_coarse_A", "net_coarse_B", "net_up_A", "net_up_B", "dino16_c0_31", "vgg8_c0_15", "gp16_c0_31",
                                           "s16_gm_flow", "s16_gm_certainty", "s16_flow", "s16_certainty", "s1_flow", "s1_certainty",
                                           "up_s1_flow", "up_s1_certainty", "certainty")}
    p32 = torch.cat((o32["warp"][:, :W, 2:], o32["warp"][:, W:, :2]), dim=1)
    p64 = torch.cat((o64["warp"][:, :W, 2:], o64["warp"][:, W:, :2]), dim=1)
    r["warp"] = mx(p32, p64)
    r["warp_px_at_640x480_max"] = float(((p32.double() - p64.double()).abs() * torch.tensor([320.0, 240.0], dtype=torch.float64)).max())
    r["certainty_zeroed_differs"] = int(((o32["certainty"] == 0) != (o64["certainty"] == 0)).sum())
    # sampled sets (fp64 outputs sampled through the fp32 RNG path)
    s32 = set(o32["sample_idx"].tolist())
    s64 = set(o64["sample_idx"].tolist())
    st1_32, st1_64 = set(o32["sample_idx_stage1"].tolist()), set(o64["sample_idx_stage1"].tolist())
    r["stage1_overlap_frac"] = len(st1_32 & st1_64) / max(len(st1_32), 1)
    r["sample_overlap_frac"] = len(s32 & s64) / max(len(s32), 1)
    r["sample_same_order_frac"] = float((o32["sample_idx"] == o64["sample_idx"]).double().mean()) if len(s32) == len(s64) else None
    # keypoints at the same sampled cells: fp32 sampled kpts vs the fp64 warp at those cells
    flat64 = o64["warp"].reshape(-1, 4).double()
    k = flat64[o32["sample_idx"].long()]
    kA = torch.stack((320 * (k[:, 0] + 1), 240 * (k[:, 1] + 1)), -1)
    kB = torch.stack((320 * (k[:, 2] + 1), 240 * (k[:, 3] + 1)), -1)
    keep = o32["keep"]
    r["certainty_at_fp32_samples_max_abs"] = float((o64["certainty"].reshape(-1).double()[o32["sample_idx"].long()] - o32["certainty_at_samples"].double()).abs().max())
    s0 = torch.tensor(o32["_scale0"], dtype=torch.float64)
    s1 = torch.tensor(o32["_scale1"], dtype=torch.float64)
    r["mkpts_orig_at_same_cells_max_abs_px"] = float(torch.maximum(((kA[keep] + 0.5) * s0 - 0.5 - o32["mkpts0"].double()).abs().max(),
                                                                   ((kB[keep] + 0.5) * s1 - 0.5 - o32["mkpts1"].double()).abs().max()))
    r["mkpts_f_at_same_cells_max_abs_px"] = float(torch.maximum((kA[keep] - o32["mkpts0_f"].double()).abs().max(),
                                                                (kB[keep] - o32["mkpts1_f"].double()).abs().max()))
    return r


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    images, img_meta = {}, {}
    for name in IMAGES:
        images[name], img_meta[name] = make_image(name)
    t0 = time.perf_counter()
    w = wrapper_mod.MatchAnything(dict(MODEL_CONF))
    t_build = time.perf_counter() - t0
    net = w.net
    assert not net.training
    overrides, before = calibrate(w, images)
    TVF_RESIZE_CALLS.clear()
    print("overrides", {k: (v.shape, float(np.abs(v).mean())) for k, v in overrides.items()}, "before:", json.dumps(before), flush=True)
    runs32, metas, diag = {}, {}, {}
    for case, a, b in CASES:
        rec, pred = run_case(w, images[a], images[b])
        runs32[case], metas[case] = collect(rec, pred, net)
        diag[case] = stats(runs32[case], net)
        print(case, json.dumps(metas[case]), json.dumps(diag[case]), flush=True)
    tvf_calls = list(TVF_RESIZE_CALLS)
    # float64 run of the same model
    net.double()
    net.model.encoder.dinov2_vitl14[0].double()  # held in a list by the authors (not a registered submodule)
    nf, sample_fp64_path = {}, {}
    for case, a, b in CASES:
        rec, pred = run_case(w, images[a], images[b], double=True)
        o64, _ = collect(rec, pred, net)
        nf[case] = noise(runs32[case], o64)
        mn64 = rec["mn_fp64_path"]
        if len(mn64) == 2:
            s64p = set(mn64[0][mn64[1]].tolist())
            nf[case]["sample_overlap_frac_if_sampled_in_fp64"] = len(set(runs32[case]["sample_idx"].tolist()) & s64p) / len(s64p)
        print(case, "noise", json.dumps(nf[case]), flush=True)
    return images, img_meta, runs32, metas, diag, nf, tvf_calls, t_build, time.perf_counter() - t_all, overrides, before


# ----------------------------------------------------------------------------- storage
# The pack must stay < 3 MB: large dense fields are stored as float16 copies, each with a float32 strided
# subset (<name>_sub7 = [..., 3::7, 3::7] over its two spatial axes) for tight checks (net_up: the subset only); the sampled matches and
# the certainty at the sampled cells are float32 (tight checks of the final warp / certainty at 5000 cells).
FLOAT16 = {"net_coarse", "s1_flow", "s1_certainty", "warp_pred", "certainty"}
SUB_ONLY = {"net_up"}  # only the float32 strided subset (the full float16 copies would add ~1 MB)
NOT_STORED = {"up_s1_flow", "up_s1_certainty"}  # = warp / certainty before clamp / attenuation+sigmoid (in noise floor only)
PER_IMAGE = {"net_coarse_A": "net_coarse", "net_coarse_B": "net_coarse", "net_up_A": "net_up", "net_up_B": "net_up"}
SUB = 7


def _sub(k, v):
    return v[3::SUB, 3::SUB] if k == "warp_pred" or k == "certainty" else v[..., 3::SUB, 3::SUB]


def _put(arrays, key, k, v):
    arr = v.numpy() if isinstance(v, torch.Tensor) else v
    if arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer):
        new = {key: arr}
    elif k in SUB_ONLY:
        new = {key + f"_sub{SUB}": np.ascontiguousarray(_sub(k, arr)).astype(np.float32)}
    elif k in FLOAT16:
        new = {key: arr.astype(np.float16), key + f"_sub{SUB}": np.ascontiguousarray(_sub(k, arr)).astype(np.float32)}
    else:
        new = {key: arr.astype(np.float32)}
    for kk, vv in new.items():
        if kk in arrays:
            assert np.array_equal(arrays[kk], vv), kk
        arrays[kk] = vv


def to_store(images, runs32):
    arrays = {}
    for name, im in images.items():
        arrays[f"image.{name}.orig_u8"] = im
    for case, a, b in CASES:
        o = runs32[case]
        for k, v in o.items():
            if k.startswith("_") or k in NOT_STORED:
                continue
            if k in PER_IMAGE:  # network inputs depend on one image only: stored once per image
                img = a if k.endswith("_A") else b
                _put(arrays, f"image.{img}.{PER_IMAGE[k]}", PER_IMAGE[k], v)
                continue
            if k == "warp":  # channels of the identity grid are not stored (exact linspace, see manifest)
                W = v.shape[1] // 2
                hs, ws = v.shape[0], W
                ref = torch.stack(torch.meshgrid(torch.linspace(-1 + 1 / hs, 1 - 1 / hs, hs), torch.linspace(-1 + 1 / ws, 1 - 1 / ws, ws), indexing="ij")[::-1], -1)
                assert torch.equal(v[:, :W, :2], ref) and torch.equal(v[:, W:, 2:], ref)
                v = torch.cat((v[:, :W, 2:], v[:, W:, :2]), dim=1)
                k = "warp_pred"
            _put(arrays, f"{case}.{k}", k, v)
    return arrays


def write_pack(images, img_meta, runs32, metas, diag, nf, tvf_calls, t_build, t_all, overrides, before):
    arrays = to_store(images, runs32)
    for name, v in overrides.items():
        arrays["weights_override." + name] = v
    q16 = {}
    for case, a, b in CASES:  # float16 storage error of each float16 copy
        o = runs32[case]
        W = o["warp"].shape[1] // 2
        full = {f"{case}.warp_pred": torch.cat((o["warp"][:, :W, 2:], o["warp"][:, W:, :2]), 1), f"{case}.certainty": o["certainty"],
                f"{case}.s1_flow": o["s1_flow"], f"{case}.s1_certainty": o["s1_certainty"],
                f"image.{a}.net_coarse": o["net_coarse_A"], f"image.{b}.net_coarse": o["net_coarse_B"],
                f"image.{a}.net_up": o["net_up_A"], f"image.{b}.net_up": o["net_up_B"]}
        for k, v in full.items():
            if k in arrays and arrays[k].dtype == np.float16:
                q16[k] = float(np.abs(arrays[k].astype(np.float64) - v.numpy().astype(np.float64)).max())
    np.savez_compressed(OUT / "reference.npz", **arrays)
    sizes = {}
    for k, v in arrays.items():
        import io
        buf = io.BytesIO()
        np.savez_compressed(buf, x=v)
        sizes[k] = len(buf.getvalue())
    space = _to_plain(CONFIGS["space"].ROMA)
    used = _to_plain(CONFIGS["used"].ROMA)
    lc = lower_config(CONFIGS["used"])["roma"]
    man = {
        "what": "Reference outputs of the authors' MatchAnything-RoMa code (Space pipeline) with seeded random weights at reduced test-time resolution",
        "sources": {
            "authors_code": {"repo": "github:MathiasVanGompel/MatchAnything", "commit": "6f13a8352882e5152240320768ea125efdd2289d",
                             "commit_title": "ADD: MatchAnything (author hexingyi, 2025-06-29)", "note": "later commits of that fork are not the authors' (they change resizes)"},
            "wrapper": "imcui/hloc/matchers/matchanything.py (class MatchAnything, model_name matchanything_roma)",
            "pre/post-processing": "imcui/hloc/match_dense.py match_images() + confs['matchanything_roma']; imcui/hloc/extract_features.py resize_image()",
            "model": "imcui/third_party/MatchAnything/third_party/ROMA/roma/matchanything_roma_model.py (MatchAnything_Model.forward_inference)",
            "network": ["third_party/ROMA/experiments/roma_outdoor.py get_model", "roma/models/matcher.py (RegressionMatcher, Decoder, ConvRefiner, GP, CosKernel)",
                        "roma/models/encoders.py (CNNandDinov2, VGG19)", "roma/models/transformer (TransformerDecoder, DINOv2 vit_large)",
                        "roma/utils/utils.py (resize_by_longest_edge_and_stretch, cls_to_flow_refine)", "roma/utils/kde.py", "roma/utils/local_correlation.py"],
            "config": ["src/config/default.py (_CN.ROMA)", "configs/models/roma_model.py"],
        },
        "stand_ins": STAND_INS + [
            "hloc package __init__ (DEVICE='cpu', MODEL_REPO_ID='', logger): the real one writes log files",
            "PL_LoFTR: MatchAnything_Model(lower_config(cfg)['roma'], test_mode=True) + load_state_dict(ckpt['state_dict'], strict=False) with an assert that no key is missing or unexpected; it also sets COARSE_RES/UPSAMPLE_RES (see config.changed_from_space)",
            "match_dense.match_images / scale_keypoints and extract_features.resize_image run from their source via ast (the modules import h5py, scipy, pycolmap, ...); torchvision.transforms.functional.resize inside match_images is the real one (an identity at 640x480, checked)",
        ],
        "config": {
            "model_conf (match_dense.confs['matchanything_roma']['model'])": MODEL_CONF,
            "preprocessing_conf (match_dense.confs['matchanything_roma']['preprocessing'])": PREPROC_CONF,
            "ROMA_space (default.py + roma_model.py + wrapper's CPU overrides)": space,
            "ROMA_used": used,
            "roma_config_given_to_MatchAnything_Model": _to_plain(lc),
            "changed_from_space": {
                "ROMA.TEST_TIME.COARSE_RES": {"space": space["TEST_TIME"]["COARSE_RES"], "used": list(COARSE_RES),
                                              "why": "pack size and test speed (a 2-core CPU test in seconds); divisible by 14 and 8 as the config comment requires"},
                "ROMA.TEST_TIME.UPSAMPLE_RES": {"space": space["TEST_TIME"]["UPSAMPLE_RES"], "used": list(UPSAMPLE_RES),
                                                "why": "same; divisible by 8; keeps the Space's upsample/coarse ratio > 1 (2.0 here, 864/560 = 1.543 in the Space)"},
            },
            "derived": {
                "upsample_scale_factor (sqrt(up_h*up_w/(coarse_h*coarse_w)))": math.sqrt(UPSAMPLE_RES[0] * UPSAMPLE_RES[1] / (COARSE_RES[0] * COARSE_RES[1])),
                "space_upsample_scale_factor": math.sqrt(864 * 864 / (560 * 560)),
                "dinov2_grid": [COARSE_RES[0] // 14, COARSE_RES[1] // 14], "vgg_scales_first_pass": {s: [COARSE_RES[0] // s, COARSE_RES[1] // s] for s in (1, 2, 4, 8)},
                "vgg_scales_upsample_pass": {s: [UPSAMPLE_RES[0] // s, UPSAMPLE_RES[1] // s] for s in (1, 2, 4, 8)},
            },
            "device": "cpu", "dtype": "float32", "amp": "off (the wrapper sets ROMA.MODEL.AMP=False and LOFTR.FP16=False when DEVICE is cpu; on a GPU the Space runs ROMA with AMP fp16 autocast)",
            "ignored_settings": {
                "model_conf.match_threshold (0.1)": "written to LOFTR.MATCH_COARSE.THR, which the RoMa path never reads; the RoMa threshold is ROMA.MATCH_THRESH = 0.0, applied to sample()'s certainty (1.0 for every cell above 0.05), so it only drops cells whose certainty was zeroed (|warp| > 1)",
                "model_conf.img_resize (832)": "used only for ELoFTR's NPE",
                "preprocessing_conf.dfactor (32)": "no effect: 640 and 480 are multiples of 32 (the torchvision F.resize in match_images is an identity, checked)",
                "preprocessing_conf.resize_max (832)": "not ignored, but no effect for this pack's 160-wide originals: an original whose longer side exceeds 832 is first resized (cv2 INTER_AREA) to longer side 832 (round), then force-resized to 640x480",
                "wrapper grayscale / LANCZOS resize(df=32) / 640x640 padding / masks": "computed by MatchAnything._forward but unused by the RoMa model, which reads data['image0_rgb_origin'] = match_images' RGB tensor (1,3,480,640) in [0,1]",
                "ROMA.MODE ('train_framework')": "unused at test time (test_mode=True selects forward_inference)",
            },
            "notes": NOTES,
        },
        "weights": {
            "function": "matchanything_ros.models.roma.random_weights.seeded_tensor(name, shape, dtype, seed) / seeded_state_dict(template, seed)",
            "seed": SEED,
            "recipe": "see the docstring of random_weights.py: a generator seeded with crc32(name)*1000003 + seed per tensor, after stripping a leading 'matcher.model.' from the name; running_var U(0.5,1.5), running_mean N(0,0.1^2), bias N(0,0.02^2), DINOv2 layer scales (names ending ls1.gamma / ls2.gamma) 0.1*(1+0.1N), other gamma and 1-D weight 1+0.1N, the coarse classifier's residual output projections (embedding_decoder.blocks.{i}.attn.proj.weight / .mlp.fc2.weight) 0.1*N(0,1/fan_in), other >=2-D tensors N(0,1/fan_in), the rest N(0,0.02^2)",
            "naming_checkpoint": "names of the published MatchAnything-RoMa checkpoint: {'state_dict': {'matcher.model.<name>': tensor}} (MatchAnything_Model.load_state_dict strips 'matcher.'); seeded_tensor is called with the full 'matcher.model.<name>' and ignores that prefix, so seeded_tensor('matcher.model.<name>') == seeded_tensor('<name>') (a re-implementation whose keys are '<name>' gets the same values)",
            "naming_dinov2": "bare names of dinov2_vitl14_pretrain.pth (cls_token, pos_embed, mask_token, patch_embed.proj.weight, blocks.{i}.norm1.weight, ..., norm.weight); loaded by the authors' code with vit.load_state_dict(..) (strict)",
            "template_shapes": "from the authors' modules: MatchAnything_Model.state_dict() (matcher.model.*) and vit_large(img_size=518, patch_size=14, init_values=1.0, ffn_layer='mlp', block_chunks=0).state_dict()",
            "integer tensors": "num_batches_tracked = 0 (int64)",
            **WEIGHTS_LOG,
            "overrides": {
                "what": "tensors set from data on top of seeded_state_dict, stored in reference.npz as 'weights_override.<checkpoint-layout name>' (float32); every other tensor is the seeded recipe. Apply: state = seeded_state_dict(template, seed); then for each npz key 'weights_override.<name>': state[<name> mapped to the model's layout] = torch.from_numpy(value) (a re-implementation with keys '<name without matcher.model.>' strips 'matcher.model.')",
                "tensors": {name: {"shape": list(v.shape), "dtype": str(v.dtype), "npz_key": "weights_override." + name} for name, v in overrides.items()},
                "rule": OVERRIDE_RULE,
                "collapse_without_overrides_flir00006": before,
            },
        },
        "sampling": {"seed": SAMPLE_SEED, "rule": "torch.manual_seed(seed) immediately before RegressionMatcher.sample(warp, certainty, num=5000); two torch.multinomial calls follow (CPU, float32 certainty)",
                     "method": "threshold_balanced: cert[cert>0.05]=1; multinomial(cert, min(4*5000, H*2W), replacement=False) -> 20000 'stage1' indices; density = kde(matches, std=0.1) = sum_j exp(-|m_i-m_j|^2/(2*0.1^2)) over the 20000 4-vectors; p = 1/(density+1); p[density<10] = 1e-7; multinomial(p, 5000, replacement=False)"},
        "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__, "numpy": np.__version__, "opencv": cv2.__version__,
                     "pillow": PIL.__version__, "python": sys.version.split()[0], "num_threads": NUM_THREADS},
        "images": img_meta,
        "cases": {case: {"image_A": a, "image_B": b, **metas[case], "diagnostics": diag[case]} for case, a, b in CASES},
        "match_images_tvf_resize_calls": tvf_calls,
        "noise_floor_fp32_vs_fp64": nf,
        "suggested_tolerances": suggested_tolerances(nf, q16),
        "coarse_stage": COARSE_NOTE,
        "noise_floor_note": "fp64: same model after model.double() (+ the DINOv2 held in a list), inputs cast to float64 at self_inference_time_match, default dtype float64 and the authors' .float() calls kept at float64. Sampling of the fp64 run goes through the fp32 RNG path (warp/certainty cast to float32 before sample) so that the overlap measures numeric noise, not a different exponential_ stream; sample_overlap_frac_if_sampled_in_fp64 shows the other case. warp: the predicted channels in normalised [-1,1] units; warp_px_at_640x480_max in pixels of the 640x480 frame.",
        "timing_s": {"build_model_and_seeded_weights": t_build, "total_generator": t_all,
                     "per_case_fp32": {c: {"network": metas[c]["t_network_s"], "sample": metas[c]["t_sample_s"], "match_images_total": metas[c]["t_match_images_s"]} for c, _, _ in CASES}},
        "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype), "npz_bytes": sizes[k], **({"float16_max_abs_quantisation": q16[k]} if k in q16 else {})}
                   for k, v in arrays.items()},
        "array_meaning": ARRAY_MEANING,
    }
    json.dump(man, open(OUT / "manifest.json", "w"), indent=1)
    return arrays, sizes


def _up1(x):  # round up to one significant digit
    if x <= 0:
        return 0.0
    e = math.floor(math.log10(x))
    return float(f"{math.ceil(round(x / 10 ** e, 9)) * 10.0 ** e:.1e}")


def suggested_tolerances(nf, q16):
    """About 10x the fp32-vs-fp64 noise floor (max over cases), rounded up; float16 copies add twice their storage error."""
    cases = list(nf)
    mx = lambda k: max(nf[c][k]["max_abs"] for c in cases)
    q = lambda part: max([v for k, v in q16.items() if k.endswith("." + part)] or [0.0])
    t = {
        "net_coarse_sub7, net_up_sub7 (f32)": _up1(10 * max(mx("net_coarse_A"), mx("net_coarse_B"), mx("net_up_A"), mx("net_up_B"))),
        "net_coarse (f16 copy)": _up1(10 * max(mx("net_coarse_A"), mx("net_coarse_B")) + 2 * q("net_coarse")),
        "dino16_c0_31": _up1(10 * mx("dino16_c0_31")), "vgg8_c0_15": _up1(10 * mx("vgg8_c0_15")), "gp16_c0_31": _up1(10 * mx("gp16_c0_31")),
        "s16_gm_flow, s16_flow": _up1(10 * max(mx("s16_gm_flow"), mx("s16_flow"))),
        "s16_gm_certainty, s16_certainty (logits)": _up1(10 * max(mx("s16_gm_certainty"), mx("s16_certainty"))),
        "s1_flow_sub7": _up1(10 * mx("s1_flow")), "s1_flow (f16 copy)": _up1(10 * mx("s1_flow") + 2 * q("s1_flow")),
        "s1_certainty_sub7 (logits)": _up1(10 * mx("s1_certainty")), "s1_certainty (f16 copy)": _up1(10 * mx("s1_certainty") + 2 * q("s1_certainty")),
        "warp_pred_sub7 (normalised)": _up1(10 * mx("warp")), "warp_pred (f16 copy)": _up1(10 * mx("warp") + 2 * q("warp_pred")),
        "certainty_sub7, certainty_at_samples": _up1(10 * max(mx("certainty"), max(nf[c]["certainty_at_fp32_samples_max_abs"] for c in cases))),
        "certainty (f16 copy)": _up1(10 * mx("certainty") + 2 * q("certainty")),
        "mkpts0_f, mkpts1_f (px, 640x480 frame, at the reference sample_idx)": _up1(10 * max(nf[c]["mkpts_f_at_same_cells_max_abs_px"] for c in cases)),
        "mkpts0, mkpts1 (px, original image)": _up1(10 * max(nf[c]["mkpts_orig_at_same_cells_max_abs_px"] for c in cases)),
        "sample_idx": "set overlap >= 0.99 of 5000 (order not compared); measured fp32 vs fp64 (fp32 RNG path): "
                      + ", ".join(f"{nf[c]['sample_overlap_frac']:.4f}" for c in cases) + "; fp64 sampled through the float64 RNG path: "
                      + ", ".join(f"{nf[c].get('sample_overlap_frac_if_sampled_in_fp64', float('nan')):.4f}" for c in cases)
                      + "; same position in the order: " + ", ".join(f"{nf[c]['sample_same_order_frac']:.4f}" for c in cases),
        "keep, sample_conf, mconf": "equal on common samples",
    }
    return t


NOTES = {
    "double_resize": "original -> cv2.resize to 640x480 (float32; 'cv2_area' requested, cv2.INTER_LINEAR used when either side is upsampled; originals with longer side > 832 get an INTER_AREA resize to 832 first) -> /255 -> torchvision Resize to (112,112) and separately to (224,224) (Space: 560 / 864), BICUBIC, antialias=True, aspect ratio NOT kept (resize_by_stretch), no clamp",
    "antialias_version": "torchvision >= 0.17 (the Space pins 0.17.2) antialiases tensor Resize by default; the authors' MatchAnything environment.yaml pins torchvision 0.13.1, where tensor bicubic Resize had no antialias. This pack follows the Space (antialias=True)",
    "no_normalisation": "ROMA.NORMALIZE_IMG = False: DINOv2 and VGG19-BN get RGB in [0,1] (not ImageNet-normalised), channel order RGB (gradio / cv2 BGR->RGB here)",
    "dinov2_not_in_checkpoint": "the DINOv2 ViT-L/14 is held in a python list (CNNandDinov2.dinov2_vitl14 = [vit]): it is not part of the MatchAnything state dict; the Space loads Meta's dinov2_vitl14_pretrain.pth for it (frozen, used under torch.no_grad)",
    "dinov2_pos_embed": "interpolate_pos_encoding: 37x37 table -> F.interpolate(bicubic, scale_factor=((w/14+0.1)/37, (h/14+0.1)/37), align_corners=False, antialias=False) -> 8x8 here (40x40 in the Space); the sampling positions use that scale factor (not 8/37)",
    "scale_16_is_stride_14": "corresps[16] lives on the DINOv2 grid (H/14: 8x8 here, 40x40 in the Space), scale 8 on the VGG stride-8 grid (14x14 / 28x28 here)",
    "upsample_pass": "second forward_symmetric on the 224 (864) images: VGG only (no DINOv2), decoder scales 8,4,2,1 starting from the first pass's scale-1 flow and certainty logits bilinearly resized (align_corners=False) to the stride-8 grid; refiners get scale_factor = sqrt(up_h*up_w/(coarse_h*coarse_w)) (2.0 here, 1.543 in the Space) in their displacement embedding",
    "attenuate_cert": "final logit = up_s1_certainty - 0.5*min(bilinear(first-pass corresps[16] certainty -> 224x224), 0); sigmoid; certainty := 0 where |flow| > 1 in x or y; flow clamped to [-1,1]",
    "symmetric": "batch 0 = A->B (query im_A), batch 1 = B->A; warp (H, 2W, 4): left half (grid_A, A->B), right half (B->A, grid_B); certainty (H, 2W)",
    "mconf_is_not_a_confidence": "sample() in threshold mode sets certainty > 0.05 to 1.0 and returns that, so mconf is 1.0 for every match above 0.05",
    "to_pixel_coordinates": "x = W/2*(u+1), y = H/2*(v+1) with H,W = 480,640 (resize_by_stretch: the size of match_images' tensor): pixel-corner convention (the centre of pixel i is i+0.5)",
    "half_pixel_offset": "match_images maps keypoints back with (k + 0.5) * s - 0.5 (s = orig/640, orig/480), which assumes pixel-centre input; applied to the corner-convention RoMa keypoints it puts them +0.5*s px (in original pixels) off the centre-convention position; the pack stores exactly what the Space returns",
    "border_mask": "forward_inference keeps kpts with x <= W-1 and y <= H-1 (639, 479) in both images; with the 864 grid of the Space this drops the last grid row/column (cell 863 -> x = 639.63, y = 479.72); with the 224 grid here no grid cell is dropped (cell 223 -> x = 638.57, y = 478.93)",
    "amp": "on a GPU the Space runs RoMa under autocast fp16 (ROMA.MODEL.AMP = True) and casts DINOv2 to fp16; on the CPU the wrapper turns AMP off (this pack: fp32)",
    "kde": "kde(matches, std=0.1) is an O(N^2) cdist over the 20000 stage-1 4-vectors (about 20 s on 2 busy CPU cores here)",
}

COARSE_NOTE = (
    "The coarse stage is input-dependent with these weights (per case: cases.<case>.collapse, .diagnostics). History: with the first recipe "
    "(DINOv2 layer scales ~1, decoder blocks at the plain fan-in scale, no overrides) DINOv2's tokens collapsed (pairwise cosine >= 0.97, mean 0.997) "
    "and the coarse classifier's argmax took 1-2 of 4096 anchors over the 64 positions (s16_gm_flow std ~5e-6): a constant coarse warp. "
    "The recipe now sets the DINOv2 ls1/ls2 gammas to ~0.1 and scales embedding_decoder.blocks.{i}.attn.proj / mlp.fc2 weights by 0.1 "
    "(token cosine min 0.39-0.60, mean 0.91-0.94; the classifier still took only 2-7 anchors: "
    "weights.overrides.collapse_without_overrides_flir00006), and the running statistics of decoder.proj.16.1 are calibrated on flir00006 "
    "(weights_override.*) so that proj16 removes the token-independent part of the DINOv2 output. Result: the argmax takes 23-41 distinct anchors "
    "per direction (of 64 positions), the coarse flow has std ~0.45-0.7 (normalised) in x and y, and the final warp targets have std 75-150 px in the "
    "640x480 frame in both directions. The matches are not *correct* (random weights), only input-dependent. "
    "Certainty is not saturated (0.18-0.77) but is > 0.05 everywhere, so threshold sampling gives weight 1 to every cell (stage 1 uniform) and mconf = 1; "
    "nothing is clamped or zeroed (|warp| < 1 everywhere)."
)


ARRAY_MEANING = {
    "naming": "image.<img>.<name> (depends on one image), <case>.<name> (one pair); <img> and <case> as in manifest['images'] / ['cases']; weights_override.<name> (a weight tensor)",
    "weights_override.<name>": "float32 tensor that replaces seeded_tensor(<name>, ...) in the weights (name in the MatchAnything checkpoint layout, 'matcher.model.decoder.proj.16.1.running_mean' / '.running_var'); see manifest['weights']['overrides']",
    "<name>_sub7": "float32 strided subset of the float16 field <name>: [..., 3::7, 3::7] over its two spatial axes ((H, W) for warp_pred and certainty, the last two axes otherwise)",
    "image.<img>.orig_u8": "(h,w,3) uint8 RGB: the 'original' image handed to match_images (160 wide, INTER_AREA-downsized RoadScene image)",
    "image.<img>.net_coarse": "(3,112,112) float16 copy: first-pass network input = resize_by_longest_edge_and_stretch(match_images RGB tensor (3,480,640) in [0,1], 112): torchvision Resize((112,112), BICUBIC) on a float tensor = F.interpolate(bicubic, align_corners=False, antialias=True), no clamp, no normalisation",
    "image.<img>.net_up_sub7": "(3,32,32) float32: net_up[:, 3::7, 3::7] where net_up (3,224,224) is the upsample-pass network input, the same rule at 224 (from the same 640x480 tensor, not from the 112 one); the full tensor is not stored (size)",
    "<case>.dino16_c0_31": "(2,32,8,8) float32: channels 0..31 of the DINOv2 x_norm_patchtokens reshaped to (B,1024,8,8) (= feature_pyramid[16]) for the batch cat(im_A, im_B) of the first pass",
    "<case>.vgg8_c0_15": "(2,16,14,14) float32: channels 0..15 of the VGG19-BN stride-8 feature (input of the 4th max-pool), batch (im_A, im_B), first pass",
    "<case>.gp16_c0_31": "(2,32,8,8) float32: channels 0..31 of the GP posterior mean gps['16'](proj16(f_A), proj16(f_B)); batch 0 = A->B query A, 1 = B->A query B",
    "<case>.s16_gm_flow": "(2,2,8,8) float32: first pass, scale 16: cls_to_flow_refine(gm_cls) = flow of the coarse classifier before the '16' ConvRefiner; batch 0 = A->B (im_A query), 1 = B->A; channels (x,y) normalised [-1,1] (align_corners=False convention)",
    "<case>.s16_gm_certainty": "(2,1,8,8) float32: the coarse classifier's certainty logit (its last of 4097 outputs)",
    "<case>.s16_flow / s16_certainty": "(2,2,8,8) / (2,1,8,8) float32: corresps[16]['flow'] / ['certainty'] (logits) after the '16' refiner, first pass",
    "<case>.s1_flow / s1_certainty": "(2,2,112,112) / (2,1,112,112) float16 copies (+ _sub7 float32): corresps[1] of the first (non-upsampled) pass; the upsample pass starts from these (bilinearly resized to its stride-8 grid)",
    "<case>.warp_pred": "(224,448,2) float16 copy (+ _sub7 float32): the predicted half of the final warp returned by self_inference_time_match: [:, :224] = warp[:, :224, 2:4] (A->B: target in B), [:, 224:] = warp[:, 224:, 0:2] (B->A: target in A). The other two channels are the exact grid: warp[:, :224, 0:2] = warp[:, 224:, 2:4] = (x, y) = (linspace(-1+1/224, 1-1/224, 224)[j], linspace(...)[i])",
    "<case>.certainty": "(224,448) float16 copy (+ _sub7 float32): the final dense certainty, [:, :224] A->B, [:, 224:] B->A: sigmoid(up_s1_certainty - 0.5*min(bilinear(s16_certainty -> 224x224), 0)), set to 0 where the unclamped warp had |coord| > 1",
    "<case>.sample_idx_stage1": "(20000,) int32: the first multinomial of sample() (indices into warp.reshape(-1,4), row-major over (224,448))",
    "<case>.sample_idx": "(5000,) int32: the sampled cells in sample order = stage1[second multinomial]",
    "<case>.sample_conf": "(5000,) float32: certainty returned by sample() (1.0 where certainty > 0.05: threshold mode overwrites it)",
    "<case>.certainty_at_samples": "(5000,) float32: the final certainty at sample_idx (before the threshold overwrite)",
    "<case>.keep": "(5000,) bool: forward_inference's mask: sample_conf > ROMA.MATCH_THRESH (0.0) and kpts0.x <= 639, kpts0.y <= 479, kpts1.x <= 639, kpts1.y <= 479",
    "<case>.mkpts0_f / mkpts1_f / mconf": "(M,2)/(M,2)/(M,) float32: data['mkpts0_f'], ['mkpts1_f'], ['mconf'] = the kept sampled matches in the 640x480 frame: x = 320*(u+1), y = 240*(v+1) (to_pixel_coordinates: pixel-corner convention, the centre of pixel i is i+0.5) = what the wrapper returns as keypoints0/1 (no rescale for roma)",
    "<case>.mkpts0 / mkpts1": "(M,2) float32: match_images' keypoints0_orig / keypoints1_orig: (k + 0.5) * (orig_wh / (640,480)) - 0.5 applied to mkpts*_f",
}


if __name__ == "__main__":
    res = main()
    arrays, sizes = write_pack(*res)
    total = (OUT / "reference.npz").stat().st_size
    print("reference.npz", total, "bytes")
    for k in sorted(sizes, key=sizes.get, reverse=True)[:12]:
        print(f"  {k}: {sizes[k]}")
