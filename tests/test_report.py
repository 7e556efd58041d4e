"""`manual-backprop report`: pytest-benchmark JSON in, Markdown table, ratios and plot out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from manual_backprop.bench import report as benchreport
from manual_backprop.cli import main

ROOT = Path(__file__).resolve().parents[1]

# Seconds per call: numpy_fast is half of torch everywhere; the loop (timed on 8 samples) is slow.
TIMES = {"numpy_fast": 1e-3, "numpy_trace": 1.5e-3, "numpy_loop": 2e-3, "torch": 2e-3, "jax": 0.8e-3,
         "floor_numpy": 0.95e-3, "floor_torch": 0.9e-3}


def bench(name, median, **info):
    return {"name": name, "fullname": f"benchmarks/x.py::{name}", "group": info.get("network"),
            "stats": {"median": median, "min": median, "mean": median, "rounds": 5}, "extra_info": info}


def synthetic(scale_fast: float = 1.0) -> dict:
    benchmarks = []
    for network in ("2-3-1", "1024x4"):
        for batch in (8, 4096):
            for impl, t in TIMES.items():
                info = {"kind": "network", "network": network, "dtype": "float32", "batch": batch, "impl": impl}
                if impl == "numpy_loop":
                    info |= {"loop_samples": 8, "scale": batch / 8}
                if impl == "jax":
                    info["jax_first_call_s"] = 0.25 + t
                t = t * scale_fast if impl == "numpy_fast" else t
                benchmarks.append(bench(f"test_forward_backward[{network}-B{batch}-{impl}]", t, **info))
    benchmarks.append(bench("test_kernel[db]", 2e-6, kind="kernel", kernel="db = 1.T @ dZ",
                            variant="ones @ dZ", shape="N=512"))
    for impl, mib in (("numpy_fast", 80.0), ("torch", 84.0)):
        benchmarks.append(bench(f"test_peak_memory[{impl}]", 1.0, kind="memory", impl=impl, network="1024x4",
                                dtype="float32", batch=4096, peak_extra_mib=mib, rss_before_mib=90.0))
    return {
        "machine_info": {"cpu": {"brand_raw": "Test CPU"}, "python_version": "3.11.7",
                         "manual_backprop": {"python": "3.11.7", "numpy": "2.4.6", "torch": "2.13.0",
                                             "jax": "0.10.2", "blas": "scipy-openblas 0.3.31",
                                             "threads": {"cpu_count": 2}, "gap_s": 0.25}},
        "datetime": "2026-01-02T03:04:05", "version": "5.3.1", "benchmarks": benchmarks,
    }


def write(tmp_path, data, name="run.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return p


def test_ratios_are_taken_within_the_run_and_the_loop_is_scaled_to_the_batch():
    report = benchreport.build(synthetic())
    r = report.ratios(("1024x4", "float32", 4096))
    assert r["fast/torch"] == pytest.approx(0.5)
    assert r["fast/jax"] == pytest.approx(1.25)
    assert r["fast/floor"] == pytest.approx(1e-3 / 0.9e-3)  # the better of the two floors
    assert r["loop/fast"] == pytest.approx(2e-3 * 4096 / 8 / 1e-3)
    assert report.compile_s[("1024x4", "float32", 4096)] == pytest.approx(0.25)
    assert report.memory == {"numpy_fast": 80.0, "torch": 84.0}


def test_targets_name_each_miss():
    missed = {(t.name, t.point) for t in benchreport.build(synthetic()).targets() if not t.ok}
    assert ("fast/jax", "1024x4 float32 B=4096") in missed
    assert ("fast/floor", "1024x4 float32 B=4096") in missed  # 1.11 > 1.10
    assert not any(name == "fast/torch" for name, _ in missed)
    assert ("memory fast/torch", "1024x4 float32 B=4096") not in missed


def test_report_writes_markdown_and_plot_with_the_environment(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["report", str(write(tmp_path, synthetic())), "--output", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert text == capsys.readouterr().out.split("\nwrote ")[0]
    assert "2026-01-02" in text and "NumPy 2.4.6" in text and "torch 2.13.0" in text and "JAX 0.10.2" in text
    assert "## 1024x4, float32" in text and "| 4096 | 1 ms |" in text
    assert "**1.25** ✗" in text  # fast/jax misses its target
    assert "| fast engine | 80.0 |" in text
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_flags_a_regression_and_exits_1(tmp_path, capsys):
    old = write(tmp_path, synthetic(), "old.json")
    new = write(tmp_path, synthetic(scale_fast=1.5), "new.json")
    assert main(["report", str(new), "--compare", str(old), "--output", str(tmp_path)]) == 1
    text = capsys.readouterr().out
    assert "4 slower by more than the threshold" in text and "**regression**" in text
    assert main(["report", str(new), "--compare", str(old), "--threshold", "2", "--output", str(tmp_path)]) == 0


def test_json_output(tmp_path, capsys):
    assert main(["report", str(write(tmp_path, synthetic())), "--output", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True and doc["targets_ok"] is False
    row = next(r for r in doc["networks"] if r["network"] == "2-3-1" and r["batch"] == 8)
    assert row["ratios"]["fast/torch"] == pytest.approx(0.5)
    assert doc["environment"]["numpy"] == "2.4.6" and doc["plot"].endswith("report.png")


@pytest.mark.parametrize(("content", "message"), [
    (None, "no such file"),
    ("{not json", "not valid JSON"),
    ('{"results": []}', "not a pytest-benchmark JSON file"),
    ('{"benchmarks": [{"name": "x", "stats": null}]}', "--benchmark-disable"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, content, message):
    path = tmp_path / "r.json"
    if content is not None:
        path.write_text(content)
    assert main(["report", str(path), "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.slow
def test_a_real_tiny_benchmark_run_makes_a_report(tmp_path):
    results = tmp_path / "tiny.json"
    # Not an xdist worker's environment: a worker's pytest-benchmark saves no JSON.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "benchmarks",
         "-k", "2-3-1-float32-B8-numpy_fast or 2-3-1-float32-B8-floor_numpy",
         "--benchmark-max-time=0.01", "--benchmark-min-rounds=3", f"--benchmark-json={results}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = benchreport.build(benchreport.load(results))
    assert set(report.times[("2-3-1", "float32", 8)]) == {"numpy_fast", "floor_numpy"}
    assert report.environment["numpy"] != "?"
    assert main(["report", str(results), "--output", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "report.png").exists()
