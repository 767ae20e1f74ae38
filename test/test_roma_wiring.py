"""RoMa models (matchanything_roma, minima_roma) wired into the package: their files (published
URLs, lookup order, download with a fake fetch, the authors' zip, one-line errors), registry,
pipeline / node options, the node's refusal of a RoMa model on the CPU without
``worker.allow_cpu_frame_drops``, the CLI, and the matcher end to end on seeded random weights.

Nothing here touches the network. The tests that run the network are skipped only while
``matchanything_ros/models/roma/model.py`` does not exist; they build it at coarse_res 112 /
upsample_res 224 from seeded random weights (plumbing, never accuracy)."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from matchanything_ros.matching import ROMA_MODELS, SLOW_ON_CPU, MatcherError, available_models, create_matcher
from matchanything_ros.models.roma import files as rf
from matchanything_ros.models.eloftr.weights import WeightsError
from matchanything_ros.node.config import (
    NodeConfig, frame_rate_problem, load_params_file, parameter_specs, runtime_problem, split_parameters,
)
from matchanything_ros.pipeline import PipelineConfig

REPO = Path(__file__).resolve().parent.parent
HAVE_NETWORK = (REPO / "matchanything_ros" / "models" / "roma" / "model.py").is_file()
needs_network = pytest.mark.skipif(not HAVE_NETWORK, reason="matchanything_ros/models/roma/model.py not written yet")
SMALL = {"coarse_res": 112, "upsample_res": 224}  # test sizes (the authors': 560 / 864)


@pytest.fixture(autouse=True)
def empty_caches(tmp_path, monkeypatch):
    """Every test sees empty caches of its own (ours and torch.hub's): nothing found by accident."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("OMP_WAIT_POLICY", os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))


def _fake_files(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"not read by the lookup")
    return folder


def _one_line(text: str) -> str:
    assert "\n" not in text.strip(), text
    return text


# --------------------------------------------------------------------------- published files
def test_published_files_and_urls():
    assert [f.filename for f in rf.MODEL_FILES["matchanything_roma"]] == ["matchanything_roma.ckpt",
                                                                         "dinov2_vitl14_pretrain.pth"]
    assert [f.filename for f in rf.MODEL_FILES["minima_roma"]] == ["minima_roma.pth", "dinov2_vitl14_pretrain.pth"]
    assert rf.MINIMA_ROMA.urls == ("https://github.com/LSXI7/storage/releases/download/MINIMA/minima_roma.pth",)
    assert rf.DINOV2_VITL14.urls == ("https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth",)
    # the authors publish matchanything_roma.ckpt only inside weights.zip on Google Drive: no fetchable URL
    assert rf.MATCHANYTHING_ROMA.urls == () and "12L3g9-w8rR9K2L4rYaGaDJ7NqX1D713d" in rf.MATCHANYTHING_ROMA.by_hand
    assert "--from-zip" in rf.MATCHANYTHING_ROMA.by_hand
    assert set(ROMA_MODELS) == set(rf.MODEL_FILES) == set(SLOW_ON_CPU)


def test_lookup_order_explicit_beside_cache_torch_hub(tmp_path):
    for model in ROMA_MODELS:
        checkpoint, dinov2 = (f.filename for f in rf.MODEL_FILES[model])
        mine = _fake_files(tmp_path / model / "mine", checkpoint, dinov2)
        # a folder, or the file itself; DINOv2 beside it
        assert rf.resolve_files(model, mine, allow_download=False) == (mine / checkpoint, mine / dinov2)
        assert rf.resolve_files(model, mine / checkpoint, allow_download=False) == (mine / checkpoint, mine / dinov2)
        # an explicit DINOv2 wins over the one beside
        other = _fake_files(tmp_path / model / "other", dinov2)
        assert rf.resolve_files(model, mine, other / dinov2, allow_download=False)[1] == other / dinov2
        assert rf.resolve_files(model, mine, other, allow_download=False)[1] == other / dinov2
    # the cache holds both (no explicit path)
    cache = _fake_files(rf.cache_dir(), "minima_roma.pth", "dinov2_vitl14_pretrain.pth")
    assert rf.resolve_files("minima_roma", allow_download=False) == (cache / "minima_roma.pth",
                                                                     cache / "dinov2_vitl14_pretrain.pth")
    # DINOv2 from torch.hub's folder (where RoMa's own code downloads it) when nowhere else
    (cache / "dinov2_vitl14_pretrain.pth").unlink()
    hub = _fake_files(rf.torch_hub_dir(), "dinov2_vitl14_pretrain.pth")
    assert rf.resolve_files("minima_roma", allow_download=False)[1] == hub / "dinov2_vitl14_pretrain.pth"
    assert str(rf.torch_hub_dir()).startswith(os.environ["TORCH_HOME"])


def test_missing_files_give_one_line_naming_them_and_the_way_to_get_them(tmp_path):
    with pytest.raises(WeightsError) as err:
        rf.resolve_files("minima_roma", allow_download=False)
    text = _one_line(str(err.value))
    assert "minima_roma.pth and dinov2_vitl14_pretrain.pth not found locally" in text
    assert "weights download --model minima_roma" in text and str(rf.cache_dir()) in text
    # only DINOv2 missing: named alone
    folder = _fake_files(tmp_path / "w", "matchanything_roma.ckpt")
    with pytest.raises(WeightsError) as err:
        rf.resolve_files("matchanything_roma", folder, allow_download=False)
    text = _one_line(str(err.value))
    assert text.startswith("matchanything_roma: dinov2_vitl14_pretrain.pth not found locally;")
    assert "weights.zip" in text  # how to get MatchAnything's checkpoint
    # an explicit path that does not exist names itself
    with pytest.raises(WeightsError, match="weights file not found: .*nowhere"):
        rf.resolve_files("minima_roma", tmp_path / "nowhere.pth", allow_download=False)
    with pytest.raises(WeightsError, match="unknown RoMa model"):
        rf.resolve_files("roma_outdoor")


def test_matchanything_checkpoint_is_never_fetched(monkeypatch):
    """It has no URL: resolving with downloads allowed says how to get it and fetches nothing
    (not even DINOv2, which would be 1.2 GB for a model that cannot run anyway)."""
    real_download = rf.download

    def no_download(*args, **kwargs):
        raise AssertionError("nothing may be downloaded")

    monkeypatch.setattr(rf, "download", no_download)
    with pytest.raises(WeightsError) as err:
        rf.resolve_files("matchanything_roma", allow_download=True)
    assert "drive.google.com" in _one_line(str(err.value))
    with pytest.raises(WeightsError) as err:  # asked directly, download says the same, fetching nothing
        real_download(rf.MATCHANYTHING_ROMA, fetch=no_download)
    text = _one_line(str(err.value))
    assert "cannot be downloaded by this program: the authors publish it only inside weights.zip" in text


def test_download_with_a_fake_fetch(tmp_path):
    def offline(url, dest):
        dest.write_bytes(b"partial")
        raise OSError("no route to host")

    with pytest.raises(WeightsError) as err:
        rf.download(rf.DINOV2_VITL14, fetch=offline)
    text = _one_line(str(err.value))
    # the file both models share: both commands named
    assert "looks offline" in text and "--model matchanything_roma" in text and "--model minima_roma" in text
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # no half file left anywhere
    fetched = []

    def fake(url, dest):
        fetched.append(url)
        dest.write_bytes(b"weights")

    path = rf.download(rf.MINIMA_ROMA, fetch=fake)
    assert path == rf.cache_dir() / "minima_roma.pth" and fetched == list(rf.MINIMA_ROMA.urls)
    assert rf.download(rf.MINIMA_ROMA, fetch=fake) == path and len(fetched) == 1  # present: not fetched again
    target = rf.download(rf.DINOV2_VITL14, tmp_path / "elsewhere", fetch=fake)
    assert target == tmp_path / "elsewhere" / "dinov2_vitl14_pretrain.pth" and fetched[-1] == rf.DINOV2_VITL14.urls[0]


def test_checkpoint_taken_out_of_the_authors_zip(tmp_path):
    archive = tmp_path / "weights.zip"
    with zipfile.ZipFile(archive, "w") as zf:  # the authors' layout: weights/<name>.ckpt, both models
        zf.writestr("weights/matchanything_eloftr.ckpt", b"eloftr")
        zf.writestr("weights/matchanything_roma.ckpt", b"roma bytes")
    path = rf.extract_from_zip(rf.MATCHANYTHING_ROMA, archive)
    assert path == rf.cache_dir() / "matchanything_roma.ckpt" and path.read_bytes() == b"roma bytes"
    assert not list(rf.cache_dir().glob("*.part")) and not (rf.cache_dir() / "matchanything_eloftr.ckpt").exists()
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("weights/something.ckpt", b"x")
    with pytest.raises(WeightsError, match="holds no matchanything_roma.ckpt"):
        rf.extract_from_zip(rf.MATCHANYTHING_ROMA, tmp_path / "other.zip", tmp_path / "t")
    (tmp_path / "not.zip").write_bytes(b"garbage")
    with pytest.raises(WeightsError, match="not a readable zip"):
        rf.extract_from_zip(rf.MATCHANYTHING_ROMA, tmp_path / "not.zip", tmp_path / "t")


# --------------------------------------------------------------------------- CLI `weights`
def _cli(capsys, *args) -> tuple[int, str, str]:
    from matchanything_ros.cli import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_weights_path_and_download(tmp_path, capsys):
    code, out, err = _cli(capsys, "weights", "path", "--model", "minima_roma")
    assert code == 2 and "weights download --model minima_roma" in _one_line(err)
    folder = _fake_files(tmp_path / "w", "minima_roma.pth", "dinov2_vitl14_pretrain.pth")
    code, out, err = _cli(capsys, "weights", "path", "--model", "minima_roma", "--weights", folder)
    assert code == 0 and out.split() == [str(folder / "minima_roma.pth"), str(folder / "dinov2_vitl14_pretrain.pth")], err
    # download: DINOv2 already in the cache (so nothing is fetched); the checkpoint has no URL
    _fake_files(rf.cache_dir(), "dinov2_vitl14_pretrain.pth")
    code, out, err = _cli(capsys, "weights", "download", "--model", "matchanything_roma")
    assert code == 2 and "weights.zip" in _one_line(err) and "dinov2_vitl14_pretrain.pth" in out
    archive = tmp_path / "weights.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("weights/matchanything_roma.ckpt", b"roma")
    code, out, err = _cli(capsys, "weights", "download", "--model", "matchanything_roma", "--from-zip", archive)
    assert code == 0 and str(rf.cache_dir() / "matchanything_roma.ckpt") in out, err
    code, out, err = _cli(capsys, "weights", "path", "--model", "matchanything_roma")
    assert code == 0 and len(out.split()) == 2
    code, out, err = _cli(capsys, "weights", "download", "--from-zip", archive)  # ELoFTR: not its option
    assert code == 2 and "--from-zip applies to --model matchanything_roma only" in err


# --------------------------------------------------------------------------- registry / options
def test_registry_pipeline_and_node_options(tmp_path):
    from matchanything_ros.matching.model_benchmark import WEIGHTED, parse_cases

    assert set(ROMA_MODELS) <= set(available_models()) and set(ROMA_MODELS) <= set(WEIGHTED)
    assert parse_cases("minima_roma, matchanything_roma") == [("minima_roma", None), ("matchanything_roma", None)]
    specs = {s.name: s for s in parameter_specs()}
    assert set(ROMA_MODELS) <= set(specs["model"].choices) and "minima_roma" in specs["model"].description
    assert "minima_roma.pth" in specs["weights"].description
    flag = specs["worker.allow_cpu_frame_drops"]
    assert flag.default is False and not flag.read_only and "dropped" in flag.description
    # what the pipeline hands a RoMa matcher: no resolution / threshold; max_matches = matches sampled
    options = PipelineConfig(model="minima_roma", weights=str(tmp_path), max_matches=5000, device="cpu").matcher_options()
    assert options == {"backend": "auto", "device": "cpu", "precision": "fp32", "weights": str(tmp_path),
                       "num_matches": 5000, "coarse_res": None, "upsample_res": None}
    small = PipelineConfig(model="minima_roma", roma_coarse_res=112, roma_upsample_res=224).matcher_options()
    assert (small["coarse_res"], small["upsample_res"]) == (112, 224)
    with pytest.raises(ValueError, match="roma_coarse_res / roma_upsample_res: coarse_res 100"):
        PipelineConfig(model="minima_roma", roma_coarse_res=100).validate()
    # node / replay parameters (a params file, as `--params-file` gives them)
    params = tmp_path / "p.yaml"
    params.write_text("/**:\n  ros__parameters:\n    model: matchanything_roma\n    device: cuda\n"
                      "    worker: {allow_cpu_frame_drops: true}\n")
    node, pipe = load_params_file(params)
    assert pipe.model == "matchanything_roma" and node.worker.allow_cpu_frame_drops is True


def test_benchmark_hands_roma_its_own_options(tmp_path, monkeypatch):
    """`benchmark --models minima_roma` builds the matcher with the options it takes (no
    `resolution`, no engine `cache_dir`) and the random files only when a RoMa model is asked for."""
    import matchanything_ros.matching as matching
    from matchanything_ros.matching import Matches
    from matchanything_ros.matching import model_benchmark as mb

    built = []

    class Fake:
        def match(self, a, b):
            return Matches(np.zeros((3, 2)), np.zeros((3, 2)), np.ones(3))

        def describe(self):
            return "fake"

    monkeypatch.setattr(matching, "create_matcher", lambda model, **options: built.append((model, options)) or Fake())
    monkeypatch.setattr(mb, "random_weights_paths", lambda work, seed, models: {m: work / "w" for m in models})
    rows = mb.run_model_benchmark([("minima_roma", None), ("xfeat", None)], [(160, 128)], random_weights=True,
                                  warmup=1, runs=1, work_dir=tmp_path, progress=lambda _: None)
    assert [r.matches for r in rows] == [3, 3]
    assert built[0] == ("minima_roma", {"device": "cpu", "weights": tmp_path / "w", "download": False})
    assert built[1][1]["resolution"] == 160


def test_matcher_refuses_other_backends_precisions_and_missing_files(tmp_path):
    with pytest.raises(MatcherError, match="torch backend only"):
        create_matcher("minima_roma", backend="onnxruntime", device="cpu", download=False)
    with pytest.raises(MatcherError, match="fp32 only"):
        create_matcher("matchanything_roma", precision="fp16", device="cpu", download=False)
    with pytest.raises(MatcherError, match="num_matches must be an integer >= 1"):
        create_matcher("minima_roma", num_matches=0, device="cpu", download=False)
    with pytest.raises(WeightsError) as err:  # offline, nothing found: one line, never a download
        create_matcher("minima_roma", weights=None, device="cpu", download=False)
    assert "weights download --model minima_roma" in _one_line(str(err.value))


# --------------------------------------------------------------------------- node: refusal on the CPU
def test_frame_rate_problem_refuses_roma_on_the_cpu_unless_opted_in(monkeypatch):
    allowed = NodeConfig(worker={"allow_cpu_frame_drops": True})
    for model in ROMA_MODELS:
        problem = frame_rate_problem(NodeConfig(), PipelineConfig(model=model, device="cpu"))
        assert f"model {model!r} on the CPU takes tens of seconds per pair" in _one_line(problem)
        assert "worker.allow_cpu_frame_drops: true" in problem and "device 'cuda'" in problem
        assert frame_rate_problem(allowed, PipelineConfig(model=model, device="cpu")) is None
        assert frame_rate_problem(NodeConfig(), PipelineConfig(model=model, device="cuda")) is None
        assert frame_rate_problem(NodeConfig(), PipelineConfig(model=model, device="cuda:1")) is None
    for model in ("xfeat", "sift", "minima_loftr", "matchanything_eloftr", "auto"):
        assert frame_rate_problem(NodeConfig(), PipelineConfig(model=model, device="cpu")) is None
    # device auto: the CPU when PyTorch sees no GPU
    import matchanything_ros.devices as devices

    monkeypatch.setattr(devices, "auto_device", lambda: "cpu")
    assert frame_rate_problem(NodeConfig(), PipelineConfig(model="minima_roma")) is not None
    monkeypatch.setattr(devices, "auto_device", lambda: "cuda")
    assert frame_rate_problem(NodeConfig(), PipelineConfig(model="minima_roma")) is None
    # the flag travels as a node parameter (start-up values and run-time changes alike)
    node, pipe = split_parameters({"model": "minima_roma", "device": "cpu", "worker.allow_cpu_frame_drops": True})
    assert frame_rate_problem(node, pipe) is None


def test_runtime_change_needs_the_files_local_and_torch_fp32(tmp_path):
    folder = _fake_files(tmp_path / "w", "minima_roma.pth", "dinov2_vitl14_pretrain.pth")
    assert runtime_problem(PipelineConfig(model="minima_roma", weights=str(folder), device="cpu")) is None
    lonely = _fake_files(tmp_path / "only", "minima_roma.pth")  # no DINOv2 beside it, none cached
    assert "dinov2_vitl14_pretrain.pth not found locally" in runtime_problem(
        PipelineConfig(model="minima_roma", weights=str(lonely), device="cpu"))
    assert "not found locally" in runtime_problem(PipelineConfig(model="matchanything_roma", device="cpu"))
    problem = runtime_problem(PipelineConfig(model="minima_roma", weights=str(folder), backend="onnxruntime", device="cpu"))
    assert "torch backend in fp32 only" in problem


@pytest.mark.ros
def test_node_refuses_roma_on_the_cpu_at_configure_and_on_a_parameter_change():
    """The rclpy node itself (in this process, not spun, nothing loaded): a change to a RoMa model
    on the CPU is refused with the one-line reason, accepted once worker.allow_cpu_frame_drops is
    set; configure refuses before any model loads."""
    rclpy = pytest.importorskip("rclpy")
    from rclpy.parameter import Parameter

    from matchanything_ros.ros.matcher_node import MatcherNode

    ctx = rclpy.context.Context()
    rclpy.init(context=ctx)
    node = None
    try:
        node = MatcherNode(argv=[], start=False, context=ctx, parameter_overrides=[
            Parameter("model", value="minima_roma"), Parameter("device", value="cpu")])
        with pytest.raises(ValueError, match="on the CPU takes tens of seconds per pair"):
            node.configure_stage()
        assert node.pipeline is None
        (result,) = node.set_parameters([Parameter("sync.slop", value=0.05)])  # any change names the whole config
        assert not result.successful and "worker.allow_cpu_frame_drops: true" in result.reason
        (result,) = node.set_parameters([Parameter("worker.allow_cpu_frame_drops", value=True)])
        assert result.successful, result.reason
        (result,) = node.set_parameters([Parameter("worker.allow_cpu_frame_drops", value=False)])
        assert not result.successful  # would leave RoMa on the CPU without the opt-in
        (result,) = node.set_parameters([Parameter("device", value="cuda")])
        assert result.successful, result.reason  # not on the CPU: no opt-in needed
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.shutdown(context=ctx)


@pytest.mark.ros
def test_node_start_up_refusal_is_one_line(tmp_path):
    """The real console entry point: exit 1 and one FATAL line, before any model loads."""
    pytest.importorskip("rclpy")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "ROS_DOMAIN_ID": str(10 + os.getpid() % 190),
           "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    run = subprocess.run([sys.executable, "-m", "matchanything_ros.ros.matcher_node", "--ros-args",
                          "-p", "model:=minima_roma", "-p", "device:=cpu"],
                         capture_output=True, text=True, env=env, cwd=str(REPO), timeout=300)
    fatal = [line for line in (run.stdout + run.stderr).splitlines() if "cannot start" in line]
    assert run.returncode == 1 and len(fatal) == 1, run.stdout + run.stderr
    assert "on the CPU takes tens of seconds per pair" in fatal[0] and "worker.allow_cpu_frame_drops" in fatal[0]


# --------------------------------------------------------------------------- the network
@pytest.fixture(scope="module")
def random_roma(tmp_path_factory):
    """Seeded random checkpoints of both models in their published layouts + one DINOv2 file
    (the network's ``write_published_files``, float16: about 1 GB, 15 s on 2 cores)."""
    folder = tmp_path_factory.mktemp("roma_weights")
    rf.write_random_checkpoints(folder, ROMA_MODELS, seed=0)
    return folder


def _variant() -> str:
    from matchanything_ros.models.roma import VARIANTS

    return "minima_roma" if "minima_roma" in VARIANTS else "matchanything_roma"


@needs_network
def test_random_checkpoints_are_in_the_published_layouts(random_roma):
    import torch

    ma = torch.load(random_roma / "matchanything_roma.ckpt", weights_only=True, mmap=True)
    assert set(ma) == {"state_dict"} and all(k.startswith("matcher.model.") for k in ma["state_dict"])
    assert "matcher.model.encoder.cnn.layers.0.weight" in ma["state_dict"]
    minima = torch.load(random_roma / "minima_roma.pth", weights_only=True, mmap=True)
    assert "encoder.cnn.layers.0.weight" in minima and not any(k.startswith(("matcher.", "dinov2")) for k in minima)
    vit = torch.load(random_roma / "dinov2_vitl14_pretrain.pth", weights_only=True, mmap=True)
    assert {"cls_token", "pos_embed", "norm.weight"} <= set(vit) and tuple(vit["pos_embed"].shape) == (1, 1370, 1024)


class _Payload:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@needs_network
def test_a_checkpoint_that_pickles_code_is_refused_and_never_runs(tmp_path):
    """Through the matcher (load_roma): a custom class among the weights or beside the state_dict
    (where a Lightning checkpoint keeps its hyper-parameters) is refused with one line naming the
    file, and its code never runs."""
    marker = tmp_path / "PWNED_ROMA"
    dinov2 = _fake_files(tmp_path / "backbone", "dinov2_vitl14_pretrain.pth") / "dinov2_vitl14_pretrain.pth"
    payloads = {
        "inside": {"encoder.cnn.layers.0.weight": _Payload(marker)},
        "beside": {"state_dict": {}, "hyper_parameters": _Payload(marker)},
    }
    for position, payload in payloads.items():
        path = _fake_files(tmp_path / position) / "minima_roma.pth"
        with open(path, "wb") as fh:
            pickle.dump(payload, fh, protocol=2)
        with pytest.raises(WeightsError) as err:
            create_matcher(_variant(), weights=path, dinov2=dinov2, device="cpu", download=False, **SMALL)
        assert str(path) in _one_line(str(err.value)), position
    assert not marker.exists()


@needs_network
def test_matcher_on_seeded_weights_end_to_end(random_roma):
    """Both published layouts load; matches come back in original pixels, float32, repeatable
    for a seed."""
    rng = np.random.default_rng(0)
    scene = cv2.GaussianBlur((rng.random((300, 420)) * 255).astype(np.uint8), (0, 0), 2)
    visible = cv2.cvtColor(scene[10:250, 10:330], cv2.COLOR_GRAY2BGR)  # 320x240 BGR
    thermal = scene[18:298, 2:402].copy()  # 400x280 grey: another size
    variant = _variant()
    matcher = create_matcher(variant, weights=random_roma, device="cpu", download=False, num_matches=300, **SMALL)
    assert matcher.describe().startswith(f"{variant} (") and "coarse 112 px" in matcher.describe()
    found = matcher.match(visible, thermal)
    assert 0 < len(found) <= 300 and found.kpts0.dtype == np.float32
    assert np.all(found.kpts0 >= -0.5) and np.all(found.kpts0 <= [319.5, 239.5])
    assert np.all(found.kpts1 >= -0.5) and np.all(found.kpts1 <= [399.5, 279.5])
    again = matcher.match(visible, thermal)
    assert np.array_equal(found.kpts0, again.kpts0) and np.array_equal(found.scores, again.scores)
    from matchanything_ros.models.roma import VARIANTS

    for other in ROMA_MODELS:  # each published layout loads; unset, num_matches is the authors' count
        built = matcher if other == variant else create_matcher(
            other, weights=random_roma / rf.MODEL_FILES[other][0].filename, device="cpu", download=False, **SMALL)
        assert built.num_matches == (300 if other == variant else VARIANTS[other].num)


@needs_network
@pytest.mark.parametrize("model", ["matchanything_roma", "minima_roma"])
def test_cli_match_runs_roma_end_to_end(random_roma, tmp_path, model):
    """`matchanything-ros match` with a RoMa model on seeded random weights (at 112 / 224 px to
    stay quick): it matches, fits and writes its JSON; an option RoMa lacks is one line, exit 2."""
    import json

    import cv2

    from matchanything_ros.cli import main
    from matchanything_ros.synthetic import make_planar_pair

    pair = make_planar_pair(3, size=(200, 160))
    cv2.imwrite(str(tmp_path / "v.png"), pair.visible)
    cv2.imwrite(str(tmp_path / "t.png"), pair.thermal)
    common = [str(tmp_path / "v.png"), str(tmp_path / "t.png"), "--model", model, "--weights", str(random_roma),
              "--polarity", "normal", "--matcher-option", "coarse_res=112", "--matcher-option", "upsample_res=224"]
    assert main(["match", *common, "--json", str(tmp_path / "out.json")]) == 0
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["num_matches"] > 0 and model in out["model"]
    assert main(["match", *common, "--matcher-option", "resolution=320"]) == 2


@needs_network
def test_bag_replay_runs_roma_through_the_nodes_code_path(random_roma, tmp_path):
    """Bag replay (the node's pipeline, stamps, outputs) with MINIMA-RoMa on seeded weights at
    112 / 224 px: every pair is matched and published; replay has no frame-rate rule."""
    import json

    from matchanything_ros.cli import main

    bag, out = tmp_path / "bag", tmp_path / "out"
    assert main(["make-bag", str(bag), "--synthetic", "planar", "--frames", "2", "--size", "200x160", "--no-progress"]) == 0
    assert main(["replay", str(bag), "--out", str(out), "--no-progress", "-p", "model=minima_roma",
                 "-p", f"weights={random_roma}", "-p", "polarity=normal", "-p", "max_matches=500",
                 "-p", "roma_coarse_res=112", "-p", "roma_upsample_res=224"]) == 0
    assert main(["evaluate", str(out), "--gt", str(tmp_path / "bag.gt.json"), "--json", str(tmp_path / "e.json")]) == 0
    frames = json.loads((tmp_path / "e.json").read_text())["frames"]
    assert len(frames) == 2 and all(f["num_matches"] == 500 for f in frames)
