"""The benchmark runner and command at a tiny size (timings themselves are not asserted)."""
import json

import pytest

from matchanything_ros.engines.benchmark import (
    BenchmarkConfig,
    PeakRSS,
    _time_round_robin,
    format_table,
    parse_resolution,
    run_benchmark,
)


def test_parse_resolution():
    assert parse_resolution("640x480") == (640, 480)
    for bad in ("640", "641x480", "axb", "0x32"):
        with pytest.raises(ValueError, match="resolution"):
            parse_resolution(bad)


def test_peak_rss_sees_an_allocation():
    import mmap

    # A fresh anonymous mapping, every page written: new resident memory whatever malloc holds.
    # (np.ones could reuse a free, already-resident heap chunk left by earlier tests: CI saw 0 MiB.)
    size = 64 * 2**20
    with PeakRSS() as rss:
        block = mmap.mmap(-1, size)
        for offset in range(0, size, mmap.PAGESIZE):
            block[offset] = 1
    block.close()
    if rss.supported:
        assert rss.delta_mib >= 50, rss.delta_mib


def test_round_robin_interleaves_cases():
    calls_made, syncs = [], []
    calls = {name: (lambda name=name: calls_made.append(name)) for name in ("reference", "torch", "onnxruntime")}
    times, errors = _time_round_robin(calls, runs=3, sync=lambda: syncs.append(len(calls_made)))
    # one call per case per round, in the cases' order: drift hits every case alike
    assert calls_made == ["reference", "torch", "onnxruntime"] * 3
    assert {name: len(t) for name, t in times.items()} == {"reference": 3, "torch": 3, "onnxruntime": 3}
    assert all(t >= 0 for ts in times.values() for t in ts) and errors == {}
    # synchronised before and after every timed call
    assert syncs == [n for i in range(9) for n in (i, i + 1)]


def test_round_robin_drops_a_failing_case():
    calls_made = []

    def flaky():
        calls_made.append("flaky")
        if calls_made.count("flaky") == 2:
            raise RuntimeError("out of memory")

    times, errors = _time_round_robin({"ok": lambda: calls_made.append("ok"), "flaky": flaky}, runs=3)
    assert calls_made == ["ok", "flaky", "ok", "flaky", "ok"]
    assert len(times["ok"]) == 3 and len(times["flaky"]) == 1
    assert isinstance(errors["flaky"], RuntimeError) and "ok" not in errors


@pytest.mark.slow
def test_benchmark_rows_side_by_side(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    transformers = pytest.importorskip("transformers")
    assert hasattr(transformers, "EfficientLoFTRForKeypointMatching")
    config = BenchmarkConfig(
        backends=("torch", "onnxruntime"),
        resolutions=((160, 128),),
        precisions=("fp32",),
        random_weights=True,
        top_k=64,
        warmup=0,
        runs=2,
        work_dir=str(tmp_path),
    )
    # observe the real timed calls (reference forward, torch and ORT engines) to see them interleaved
    from matchanything_ros.engines import benchmark

    time_round_robin = benchmark._time_round_robin
    timed = []

    def observed(calls, runs, sync=None):
        def tag(index, fn):
            return lambda: (timed.append(index), fn())[1]

        return time_round_robin({index: tag(index, fn) for index, fn in calls.items()}, runs, sync)

    monkeypatch.setattr(benchmark, "_time_round_robin", observed)
    lines = []
    rows = run_benchmark(config, progress=lines.append)
    kinds = [(r.backend, r.precision) for r in rows]
    assert kinds == [("reference", "fp32"), ("torch", "fp32"), ("onnxruntime", "fp32")]
    assert timed == [0, 1, 2, 0, 1, 2]  # row indices, one call each per round
    reference, torch_fp32, ort_fp32 = rows
    for row in (reference, torch_fp32, ort_fp32):
        assert row.runs == 2 and 0 < row.median_ms <= row.p90_ms
        assert row.matches is not None and (row.width, row.height) == (160, 128)
    assert torch_fp32.speedup == pytest.approx(reference.median_ms / torch_fp32.median_ms)
    # same weights and threshold: the deploy network finds what the reference finds
    assert torch_fp32.matches == ort_fp32.matches == reference.matches
    assert (tmp_path / "eloftr_128x160_k64.onnx").is_file()
    table = format_table(rows)
    assert table.count("\n") == len(rows) + 1 and "| reference | cpu | fp32 | 160x128 |" in table
    assert len(lines) == len(rows)
    # per-operator profile of that export: conv dominates this network
    from matchanything_ros.engines.benchmark import benchmark_pair, format_profile, profile_onnxruntime

    profile = profile_onnxruntime(tmp_path / "eloftr_128x160_k64.onnx", *benchmark_pair(128, 160), 0.2,
                                  runs=1, trace_dir=tmp_path)
    ops = {op: share for op, _, share, _ in profile["ops"]}
    assert "Conv" in ops and sum(ops.values()) <= 1.0 + 1e-6
    assert 0 < profile["kernel_ms"] <= profile["wall_ms"] * 1.5
    assert "| Conv |" in format_profile(profile)


def test_unsupported_case_is_a_row_with_a_note(tmp_path):
    config = BenchmarkConfig(
        backends=("onnxruntime",), precisions=("fp16",), resolutions=((160, 128),),
        random_weights=True, top_k=16, reference=False, work_dir=str(tmp_path),
    )
    (row,) = run_benchmark(config, progress=lambda line: None)
    assert row.median_ms is None and "fp32 export only" in row.note


def test_benchmark_command_rejects_bad_arguments(capsys):
    from matchanything_ros.cli import main

    assert main(["benchmark", "--backends", "tvm", "--random-weights"]) == 2
    assert "unknown backend" in capsys.readouterr().err
    assert main(["benchmark", "--resolutions", "100x100", "--random-weights"]) == 2
    assert "multiples of 32" in capsys.readouterr().err


def test_benchmark_command_json(tmp_path, capsys):
    from matchanything_ros.cli import main

    out = tmp_path / "bench.json"
    code = main([
        "benchmark", "--random-weights", "--backends", "torch", "--resolutions", "160x128",
        "--top-k", "32", "--runs", "1", "--warmup", "0", "--no-reference",
        "--work-dir", str(tmp_path), "--json", str(out),
    ])
    assert code == 0
    data = json.loads(out.read_text())
    assert data["results"][0]["backend"] == "torch" and data["results"][0]["runs"] == 1
    assert "torch" in data["environment"]
    assert "| torch | cpu | fp32 | 160x128 |" in capsys.readouterr().out
