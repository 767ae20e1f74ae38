"""The repository's scripts: test.sh forwards what it is given to pytest (run on a copy with a
stub interpreter: the real script would set up .venv and run the suite); the doc checks; the
study summaries."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest


def _stub_python(tmp_path) -> Path:
    """A stand-in interpreter in .venv that prints its arguments (the pytest command line)."""
    python = tmp_path / ".venv" / "bin" / "python"
    if not python.exists():
        python.parent.mkdir(parents=True, exist_ok=True)
        python.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
        python.chmod(0o755)
    return python


def _run_test_sh(repo_root, tmp_path, *args) -> list[str]:
    (tmp_path / "scripts").mkdir(exist_ok=True)
    shutil.copy(repo_root / "scripts" / "test.sh", tmp_path / "scripts" / "test.sh")
    (tmp_path / "scripts" / "setup_env.sh").write_text("exit 0\n")
    _stub_python(tmp_path)
    (tmp_path / "test").mkdir(exist_ok=True)
    (tmp_path / "test" / "test_node.py").write_text("")
    res = subprocess.run(["bash", "scripts/test.sh", *args], cwd=tmp_path, capture_output=True, text=True,
                         env=dict(os.environ), timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout.split("\n")[:-1]


def test_test_sh_runs_the_quick_suite_by_default_and_everything_with_all(repo_root, tmp_path):
    assert _run_test_sh(repo_root, tmp_path) == ["-m", "pytest", "test", "-m", "not slow"]
    shutil.rmtree(tmp_path / "scripts")
    assert _run_test_sh(repo_root, tmp_path, "--all") == ["-m", "pytest", "test"]


def test_test_sh_keeps_the_suite_with_options_only(repo_root, tmp_path):
    # "-k slop": the expression is no path, so the (quick) suite is filtered
    assert _run_test_sh(repo_root, tmp_path, "-k", "slop", "-x") == [
        "-m", "pytest", "test", "-m", "not slow", "-k", "slop", "-x"]


def test_test_sh_forwards_test_paths(repo_root, tmp_path):
    # a named file runs whole, slow tests included
    assert _run_test_sh(repo_root, tmp_path, "test/test_node.py", "-k", "slop") == [
        "-m", "pytest", "test/test_node.py", "-k", "slop"]


def test_test_sh_latest_uses_its_own_venv_and_shows_the_drift(repo_root, tmp_path):
    latest = tmp_path / ".venv-latest" / "bin" / "python"
    latest.parent.mkdir(parents=True)
    latest.write_text('#!/bin/sh\necho latest; for a in "$@"; do echo "$a"; done\n')
    latest.chmod(0o755)
    out = _run_test_sh(repo_root, tmp_path, "--latest", "--all", "-x")
    assert out == ["latest", "scripts/lock.py", "diff", "requirements.lock", "latest", "-m", "pytest", "test", "-x"]


def test_ci_runs_the_readme_test_command_with_the_slow_tests(repo_root):
    assert Path(repo_root / ".ci" / "run").read_text().strip().endswith("exec bash scripts/test.sh --all")


def test_commands_quoted_in_the_docs_parse(repo_root):
    """scripts/check_doc_commands.py: every matchanything-ros command in README/docs parses with
    the CLI's parser, every script and test file named exists, params files read."""
    import sys

    res = subprocess.run([sys.executable, "scripts/check_doc_commands.py"], cwd=repo_root, capture_output=True,
                         text=True, timeout=900)
    assert res.returncode == 0, "\n".join(line for line in res.stdout.splitlines() if line.startswith("FAIL"))


def test_rig_summary_tables_stereo_reports_and_refuses_other_files(repo_root, tmp_path):
    """scripts/rig_summary.py (rig_sequences.sh's last step): a table of evaluate reports, the
    frame-weighted NEES shares; a file that is not such a report is one line and exit 2."""
    import json
    import sys

    def report(name, rot, tr_med, tr_max, nr, nt, frames=10):
        rig = {"rotation": {"after_20_frames_max_deg": rot},
               "translation": {"after_20_frames_median_deg": tr_med, "after_20_frames_max_deg": tr_max},
               "nees_rotation": {"share_within_chi2_95": nr, "frames": frames},
               "nees_translation": {"share_within_chi2_95": nt, "frames": frames}}
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"summary": {"rig": rig}}))
        return str(path)

    script = str(repo_root / "scripts" / "rig_summary.py")
    a, b = report("st_a", 0.1, 1.0, 2.0, 1.0, 1.0), report("st_b", 0.3, 4.0, 7.0, 1.0, 0.6)
    res = subprocess.run([sys.executable, script, a, b], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "| st_b | 0.30 | 4.00 / 7.00 | 1.00 / 0.60 |" in res.stdout
    assert "below 5 deg throughout in 1 of 2; NEES within bound: rotation 1.00, direction 0.80" in res.stdout
    gt = tmp_path / "st_a.gt.json"
    gt.write_text(json.dumps({"frames": {}}))
    res = subprocess.run([sys.executable, script, a, str(gt)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "st_a.gt.json" in res.stderr


def _doc_figures_module(repo_root):
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("check_doc_figures", repo_root / "scripts" / "check_doc_figures.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_doc_figures_read_and_format_like_the_docs(repo_root):
    """scripts/check_doc_figures.py: every quoted figure is still in its doc, and a run's output
    is turned into the figures as the doc writes them."""
    import re

    mod = _doc_figures_module(repo_root)
    for fig in mod.FIGURES:
        assert re.search(fig.quoted, (repo_root / fig.doc).read_text()), (fig.doc, fig.quoted)
        assert fig.what in mod.RUNS and fig.fmt in mod.FORMATS
    readme = next(f for f in mod.FIGURES if f.doc == "README.md")
    out = "xfeat [both]: SR@3/5/10 0.09/0.36/0.786, AUC@3/5/10 0.021/0.107/0.377, OK 0.52"
    assert mod.expected(readme, out) == ["79", "0.79", "0.38"]
    report = next(f for f in mod.FIGURES if f.fmt == "pct1")
    assert mod.expected(report, '{"ok": 29, "frames": 56, "sr": [8.93, 25.0, 50.0]}') == ["8.9", "25.0", "50.0"]


@pytest.mark.slow
def test_doc_figures_reproduce_with_the_installed_versions(repo_root):
    """The quick doc figures (README headline accuracy, the RoadScene report) reproduce: a
    version change that moves them fails here (docs/DEPENDENCIES.md)."""
    import sys

    if not (repo_root.parent / "shared" / "data" / "roadscene_dev").is_dir():
        pytest.skip("../shared/data/roadscene_dev not found")
    res = subprocess.run([sys.executable, "scripts/check_doc_figures.py"], cwd=repo_root, capture_output=True,
                         text=True, timeout=1800)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]


def test_readme_python_example_runs(repo_root, tmp_path):
    """The README's Python example, as written, on a synthetic pair saved as visible.png /
    thermal.png in the working folder: it runs and gets an OK homography."""
    import re
    import sys

    import cv2

    from matchanything_ros.synthetic import make_planar_pair

    (code,) = re.findall(r"```python\n(.*?)```", (repo_root / "README.md").read_text(), re.S)
    pair = make_planar_pair(0)
    cv2.imwrite(str(tmp_path / "visible.png"), pair.visible)
    cv2.imwrite(str(tmp_path / "thermal.png"), pair.thermal)
    code += "\nassert result.ok and registered.shape[:2] == visible.shape[:2]\n"
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(repo_root)})
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.startswith("homography: OK")


@pytest.mark.slow
def test_gpu_check_runs_its_checks_with_a_cpu_backend(repo_root, tmp_path):
    """scripts/gpu_check.py is the acceptance script for a lent GPU (issue 21); without one it
    runs the same engine checks with ONNX Runtime, so the script is known to work before the
    GPU's minutes are spent on it. GPU-only parts say SKIP and why."""
    import json
    import sys

    pytest.importorskip("onnxruntime")
    out = tmp_path / "gpu_check.json"
    models = "eloftr,minima_splg" if (repo_root.parent / "shared" / "reference" / "matchanything_eloftr").is_dir() \
        else "minima_splg"
    res = subprocess.run([sys.executable, "scripts/gpu_check.py", "--backend", "onnxruntime", "--device", "cpu",
                          "--sizes", "320x256", "--precisions", "fp32", "--runs", "2", "--top-k", "256",
                          "--models", models, "--no-node", "--no-pack", "--json", str(out)],
                         cwd=repo_root, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads(out.read_text())
    status = {r["check"].split(" (")[0]: r["status"] for r in report["rows"]}
    engines = [r for r in report["rows"] if "share_within_0_5px" in r]
    assert len(engines) == len(models.split(",")) and all(r["status"] == "PASS" for r in engines)
    assert all(r["share_within_0_5px"] >= 0.97 and r["engine_ms_median"] > 0 for r in engines)
    assert status["kernels"] == "SKIP" and status["node over DDS"] == "SKIP"
    assert "| check | status |" in res.stdout
