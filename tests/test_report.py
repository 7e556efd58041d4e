"""`manual-backprop report`: pytest-benchmark JSON in, Markdown table, ratios and plot out."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from manual_backprop import files
from manual_backprop.bench import report as benchreport
from manual_backprop.cli import main
from manual_backprop.errors import InputError

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
    assert r["fast/torch"].median == pytest.approx(0.5)
    assert r["fast/jax"].median == pytest.approx(1.25)
    assert r["fast/floor"].median == pytest.approx(1e-3 / 0.9e-3)  # the better of the two floors
    assert r["loop/fast"].median == pytest.approx(2e-3 * 4096 / 8 / 1e-3)
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
    """One grid point of benchmarks/, timed for real (its implementations side by side, 3 rounds)."""
    results = tmp_path / "tiny.json"
    # Not an xdist worker's environment: a worker's pytest-benchmark saves no JSON.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "benchmarks",
         "benchmarks/test_networks.py", "-k", "2-3-1-float32-B8",
         "--benchmark-min-rounds=3", "--rounds-until-decided=3", f"--benchmark-json={results}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = benchreport.build(benchreport.load(results))
    key = ("2-3-1", "float32", 8)
    assert {"numpy_fast", "floor_numpy", "numpy_trace", "numpy_loop"} <= set(report.times[key])
    assert all(len(times) == 3 for times in report.rounds[key].values())  # 3 interleaved rounds each
    assert report.environment["numpy"] != "?"
    assert main(["report", str(results), "--output", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "report.png").exists()


# --- The promise: bad input is exit 2 and one line on stderr, nothing on stdout, no report; ---
# --- a regression is never hidden; an output file is whole or untouched.                   ---


def run_cli(capsys, *argv):
    try:
        code = main(["report", *map(str, argv)])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, out, err, *fragments):
    assert code == 2, (code, err)
    assert out == ""
    assert err.startswith("manual-backprop: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def slower(factor: float) -> dict:
    data = synthetic()
    for b in data["benchmarks"]:
        b["stats"]["median"] *= factor
    return data


@pytest.mark.parametrize("threshold", ["nan", "inf", "-inf", "0", "-1.5"])
def test_a_threshold_that_is_not_a_positive_finite_ratio_is_exit_2(tmp_path, capsys, threshold):
    old = write(tmp_path, synthetic(), "old.json")
    new = write(tmp_path, slower(3.0), "new.json")
    out = tmp_path / "out"
    assert_one_line_error(*run_cli(capsys, new, "--compare", old, f"--threshold={threshold}", "--output", out),
                          "--threshold", threshold)
    assert not out.exists()


def test_compare_refuses_a_threshold_that_hides_every_regression():
    new, old = benchreport.build(slower(3.0), "new.json"), benchreport.build(synthetic(), "old.json")
    for threshold in (math.nan, math.inf, 0.0, -1.0):
        with pytest.raises(InputError, match="--threshold"):
            benchreport.compare(new, old, threshold)


def renamed(data: dict) -> dict:
    for b in data["benchmarks"]:
        b["fullname"] = "elsewhere/" + b["fullname"]
    return data


@pytest.mark.parametrize("old_data", [renamed(synthetic()), {"benchmarks": []}], ids=["disjoint", "empty"])
def test_two_runs_that_share_no_benchmark_are_exit_2(tmp_path, capsys, old_data):
    old = write(tmp_path, old_data, "old.json")
    new = write(tmp_path, slower(3.0), "new.json")
    out = tmp_path / "out"
    assert_one_line_error(*run_cli(capsys, new, "--compare", old, "--output", out),
                          "new.json", "old.json", "share no benchmark: nothing to compare")
    assert not out.exists()


@pytest.mark.parametrize("threshold", [None, "1.01", "2.9"])
def test_three_times_slower_is_always_a_regression_exit_1(tmp_path, capsys, threshold):
    old = write(tmp_path, synthetic(), "old.json")
    new = write(tmp_path, slower(3.0), "new.json")
    extra = ["--threshold", threshold] if threshold else []
    code, out, err = run_cli(capsys, new, "--compare", old, *extra, "--output", tmp_path / "out")
    n = len(synthetic()["benchmarks"])
    assert code == 1 and err == ""
    assert f"{n} benchmarks in both runs, {n} slower by more than the threshold" in out
    assert out.count("**regression**") == n


def _network_index(data: dict) -> int:
    return next(i for i, b in enumerate(data["benchmarks"]) if b["extra_info"].get("kind") == "network")


def _edit(change):
    """A synthetic run with ``change(benchmark)`` applied to its first network benchmark."""
    def make() -> tuple[str, int, str]:
        data = synthetic()
        i = _network_index(data)
        change(data["benchmarks"][i])
        return json.dumps(data), i, data["benchmarks"][i]["name"]
    return make


def _median(value):
    return _edit(lambda b: b["stats"].__setitem__("median", value))


# kind -> (content or a maker of (content, index, name), fragments the one line must hold besides the file)
MALFORMED = {
    "missing extra_info key": (_edit(lambda b: b["extra_info"].pop("impl")), ["extra_info.impl"]),
    "string median": (_median("0.001"), ["stats.median", "'0.001'"]),
    "null median": (_median(None), ["stats.median", "None"]),
    "NaN median": (_median(math.nan), ["stats.median", "nan"]),
    "zero median": (_median(0.0), ["stats.median", "0.0"]),
    "negative median": (_median(-1e-3), ["stats.median", "-0.001"]),
    "no stats": (_edit(lambda b: b.pop("stats")), ["stats.median", "--benchmark-disable"]),
    "benchmarks not a list": ('{"benchmarks": {"a": 1}}', ["'benchmarks' is an object, not a list"]),
    "top level not an object": ('[{"benchmarks": []}]', ["top level is a list"]),
    "truncated JSON": (lambda: (json.dumps(synthetic())[:500], None, None), ["not valid JSON", "column"]),
    "not UTF-8": (b'{"benchmarks": [\xff\xfe]}', ["not UTF-8", "0xff"]),
    "empty file": ("", ["empty"]),
    "a directory": (None, ["directory"]),
}


@pytest.mark.parametrize("kind", list(MALFORMED))
def test_malformed_benchmark_json_is_one_line_naming_file_benchmark_and_key(tmp_path, capsys, kind):
    content, fragments = MALFORMED[kind]
    index = name = None
    if callable(content):
        content, index, name = content()
    path = tmp_path / "bad run.json"
    if content is None:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    out = tmp_path / "out"
    where = [f"benchmark #{index}", repr(name)] if index is not None else []
    assert_one_line_error(*run_cli(capsys, path, "--output", out), str(path), *where, *fragments)
    assert not out.exists()  # no result, not even an empty folder


@pytest.mark.parametrize("kind", [k for k in MALFORMED if k.endswith("median") or k.startswith("missing")])
def test_malformed_old_run_is_named_too(tmp_path, capsys, kind):
    content, index, name = MALFORMED[kind][0]()
    old = tmp_path / "old.json"
    old.write_text(content, encoding="utf-8")
    new = write(tmp_path, synthetic(), "new.json")
    assert_one_line_error(*run_cli(capsys, new, "--compare", old, "--output", tmp_path / "out"),
                          str(old), f"benchmark #{index}", repr(name))


def test_build_raises_input_error_not_a_crash_on_bad_data():
    data = synthetic()
    data["benchmarks"][0]["extra_info"]["batch"] = "eight"
    with pytest.raises(InputError, match=r"benchmark #0 .*extra_info\.batch"):
        benchreport.build(data, "x.json")


def test_the_saved_real_run_passes_the_checks():
    data = benchreport.load(ROOT / "docs" / "benchmarks" / "results.json")
    report = benchreport.build(data, "results.json")
    previous = benchreport.build(benchreport.load(ROOT / "docs" / "benchmarks" / "previous.json"), "previous.json")
    assert len(benchreport.verdicts(report, previous)) == len(report.targets()) == 51
    # One entry per benchmark, or per implementation (variant) of one timed side by side.
    parts = [len((b["extra_info"].get("impls") or b["extra_info"].get("variants") or [None]))
             for b in data["benchmarks"]]
    assert len(report.by_name) == sum(parts) and report.times and report.kernels and report.memory
    # 20 network points of 7 implementations, 9 kernel rules of 2-6 ways, 4 memory, the cold check, grading
    assert len(data["benchmarks"]) == 35 and sum(parts) == 20 * 7 + 27 + 4 + 2


# --- Output: checked before the work, written atomically ---


def _no_plot(*args, **kwargs):
    raise AssertionError("the plot was drawn before the output folder was checked")


@pytest.mark.parametrize("case", ["under a file", "a file", "report.md is a folder"])
def test_an_unwritable_output_is_one_line_before_any_work(tmp_path, capsys, monkeypatch, case):
    results = write(tmp_path, synthetic())
    blocker = tmp_path / "blocker"
    blocker.write_text("keep me")
    out = {"under a file": blocker / "sub", "a file": blocker, "report.md is a folder": tmp_path / "out"}[case]
    if case == "report.md is a folder":
        (out / "report.md").mkdir(parents=True)
    monkeypatch.setattr(benchreport, "plot", _no_plot)
    assert_one_line_error(*run_cli(capsys, results, "--output", out), "manual-backprop: cannot write to ")
    assert blocker.read_text() == "keep me"


def _old_outputs(out: Path) -> None:
    out.mkdir()
    (out / "report.md").write_text("old report\n")
    (out / "report.png").write_bytes(b"old png")


def _assert_old_outputs_untouched(out: Path) -> None:
    assert (out / "report.md").read_text() == "old report\n"
    assert (out / "report.png").read_bytes() == b"old png"
    assert sorted(p.name for p in out.iterdir()) == ["report.md", "report.png"]  # no temporary left


def test_an_interrupted_plot_leaves_no_truncated_file(tmp_path, capsys, monkeypatch):
    from matplotlib.figure import Figure

    def savefig_then_interrupted(self, fname, **kwargs):
        if hasattr(fname, "write"):
            fname.write(b"\x89PNG partial")
        else:
            Path(fname).write_bytes(b"\x89PNG partial")
        raise KeyboardInterrupt

    out = tmp_path / "out"
    _old_outputs(out)
    monkeypatch.setattr(Figure, "savefig", savefig_then_interrupted)
    code, stdout, err = run_cli(capsys, write(tmp_path, synthetic()), "--output", out)
    assert code == 130 and stdout == "" and "interrupted" in err
    _assert_old_outputs_untouched(out)


def test_a_failed_write_leaves_the_old_files_whole(tmp_path, capsys, monkeypatch):
    def disk_full(fd):
        raise OSError(28, "No space left on device")

    out = tmp_path / "out"
    _old_outputs(out)
    monkeypatch.setattr(files.os, "fsync", disk_full)
    assert_one_line_error(*run_cli(capsys, write(tmp_path, synthetic()), "--output", out),
                          "cannot write to", "No space left on device")
    _assert_old_outputs_untouched(out)


def test_write_atomically_replaces_the_whole_file_or_nothing(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    assert files.write_atomically(target, "ünïcode\n") == target
    assert target.read_bytes() == "ünïcode\n".encode()
    files.write_atomically(target, b"\x00bytes")
    assert target.read_bytes() == b"\x00bytes"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, not mkstemp's 0600

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        files.write_atomically(target, "new")
    monkeypatch.undo()
    assert target.read_bytes() == b"\x00bytes" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]
    with pytest.raises(InputError, match="cannot write to .*: it is a folder"):
        files.write_atomically(tmp_path, "x")
    with pytest.raises(InputError, match="cannot write to"):
        files.write_atomically(tmp_path / "missing" / "f.txt", "x")


def test_save_figure_atomically_renders_before_touching_the_file(tmp_path):
    from matplotlib.figure import Figure

    target = tmp_path / "plot.png"
    fig = Figure()
    fig.add_subplot().plot([1, 2], [3, 4])
    files.save_figure_atomically(fig, target)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before = target.read_bytes()
    with pytest.raises(ValueError):
        files.save_figure_atomically(fig, target, format="no-such-format")
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["plot.png"]


def test_check_writable_folder_creates_and_leaves_nothing(tmp_path):
    folder = tmp_path / "a" / "b"
    assert files.check_writable_folder(folder) == folder
    assert folder.is_dir() and list(folder.iterdir()) == []


# --- Interleaved runs: the implementations of a point timed side by side, round after round ---


def interleaved(rounds: dict[str, list[float]], network="1024x4", batch=512, **extra) -> dict:
    """A run with one grid point whose implementations have these per-round times."""
    info = {"kind": "network", "network": network, "dtype": "float32", "batch": batch,
            "impls": {impl: {"times": times, **extra.get(impl, {})} for impl, times in rounds.items()}}
    data = synthetic()
    data["benchmarks"] = [bench(f"test_forward_backward[{network}-B{batch}]", 1.0, **info)]
    return data


def test_interleaved_ratios_are_the_median_of_per_round_ratios_with_their_range():
    # Each round: fast 1.0, 2.0, 3.0 ms against torch 2.0 ms, floors 0.9 / 1.0 / 2.0 and 1.0 / 0.8 / 2.5 ms.
    data = interleaved({"numpy_fast": [1e-3, 2e-3, 3e-3], "torch": [2e-3, 2e-3, 2e-3],
                        "floor_numpy": [0.9e-3, 1e-3, 2e-3], "floor_torch": [1e-3, 0.8e-3, 2.5e-3],
                        "numpy_loop": [1e-3, 1e-3, 1e-3]}, numpy_loop={"scale": 64.0})
    report = benchreport.build(data)
    key = ("1024x4", "float32", 512)
    r = report.ratios(key)
    assert (r["fast/torch"].median, r["fast/torch"].lo, r["fast/torch"].hi) == pytest.approx((1.0, 0.5, 1.5))
    # the faster floor of each round: 0.9, 0.8, 2.0 ms -> ratios 1/0.9, 2/0.8, 3/2
    assert r["fast/floor"].median == pytest.approx(1.5) and r["fast/floor"].lo == pytest.approx(1 / 0.9)
    assert r["fast/floor"].hi == pytest.approx(2.5)
    assert report.times[key]["numpy_loop"] == pytest.approx(64e-3)  # scaled to the batch
    assert report.times[key]["numpy_fast"] == pytest.approx(2e-3)   # the median round


@pytest.mark.parametrize(("fast", "verdict", "cell"), [
    ([0.80e-3, 0.90e-3, 0.95e-3], "holds", "0.90 (0.80–0.95) |"),
    ([0.95e-3, 1.02e-3, 1.10e-3], "noise", "1.02 (0.95–1.10) ~"),
    ([1.05e-3, 1.20e-3, 1.30e-3], "missed", "**1.20 (1.05–1.30)** ✗"),
])
def test_a_target_is_marked_missed_only_when_its_whole_range_misses(tmp_path, capsys, fast, verdict, cell):
    # fast/torch at 1024x4 B=512 must be <= 1.03; torch takes 1 ms every round.
    data = interleaved({"numpy_fast": fast, "torch": [1e-3] * 3})
    target = next(t for t in benchreport.build(data).targets() if t.name == "fast/torch")
    assert target.limit == 1.03 and target.verdict == verdict and target.ok == (verdict != "missed")
    assert main(["report", str(write(tmp_path, data)), "--output", str(tmp_path / "out"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    t = next(t for t in doc["targets"] if t["name"] == "fast/torch")
    assert t["verdict"] == verdict and t["range"] == pytest.approx([fast[0] / 1e-3, fast[2] / 1e-3])
    assert doc["targets_ok"] == (verdict != "missed")
    assert cell in (tmp_path / "out" / "report.md").read_text()


def test_two_interleaved_runs_compare_by_implementation(tmp_path, capsys):
    old = interleaved({"numpy_fast": [1e-3] * 3, "torch": [2e-3] * 3})
    new = interleaved({"numpy_fast": [3e-3] * 3, "torch": [2e-3] * 3})
    code = main(["report", str(write(tmp_path, new, "new.json")), "--compare", str(write(tmp_path, old, "old.json")),
                 "--output", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 1
    assert "2 benchmarks in both runs, 1 slower by more than the threshold" in out
    assert "test_forward_backward[1024x4-B512] numpy_fast | 1 ms | 3 ms | 3.00 | **regression**" in out


@pytest.mark.parametrize(("new_fast", "differ", "missed_in_one", "row", "code"), [
    # fast/torch at 1024x4 B=512 (limit 1.03), torch 1 ms a round: 0.90 (0.80–0.95) holds in the older run.
    ([0.95e-3, 1.02e-3, 1.10e-3], 1, 0, "| fast/torch <= 1.03 **(differ)** | 1024x4 float32 B=512 | "
                                        "0.90 (0.80–0.95) | 1.02 (0.95–1.10) ~ |", 0),
    # 1.20 ms against 0.90 is 1.33 x, over the default threshold 1.25: a regression too, exit 1
    ([1.05e-3, 1.20e-3, 1.30e-3], 1, 1, "| fast/torch <= 1.03 **(differ)** | 1024x4 float32 B=512 | "
                                        "0.90 (0.80–0.95) | 1.20 (1.05–1.30) ✗ |", 1),
    ([0.85e-3, 0.92e-3, 0.99e-3], 0, 0, None, 0),  # 0.92 (0.85–0.99): holds in both, so no row
])
def test_compare_sets_each_targets_verdict_beside_the_older_runs(tmp_path, capsys, new_fast, differ, missed_in_one,
                                                                  row, code):
    old = interleaved({"numpy_fast": [0.80e-3, 0.90e-3, 0.95e-3], "torch": [1e-3] * 3})
    new = interleaved({"numpy_fast": new_fast, "torch": [1e-3] * 3})
    new_path, old_path = write(tmp_path, new, "new.json"), write(tmp_path, old, "old.json")
    assert main(["report", str(new_path), "--compare", str(old_path), "--output", str(tmp_path / "out")]) == code
    text = (tmp_path / "out" / "report.md").read_text()
    assert (f"1 target judged in both runs, {differ} with a different verdict, {missed_in_one} missed in one run "
            f"and not in the other.") in text
    assert (row in text) if row else ("| target | where | older run | this run |" not in text)
    capsys.readouterr()
    assert main(["report", str(new_path), "--compare", str(old_path), "--output", str(tmp_path / "out"),
                 "--json"]) == code
    doc = json.loads(capsys.readouterr().out)
    assert (doc["verdicts_differ"], doc["verdicts_missed_in_one"]) == (differ, missed_in_one)
    (v,) = doc["verdicts_against_older"]
    assert (v["name"], v["old"]["verdict"], v["same"], v["same_ok"]) == ("fast/torch", "holds", differ == 0,
                                                                          missed_in_one == 0)
    assert v["new"]["range"] == pytest.approx([new_fast[0] / 1e-3, new_fast[2] / 1e-3])


@pytest.mark.parametrize(("impls", "fragment"), [
    ({"numpy_fast": {"times": "fast"}}, "extra_info.impls.numpy_fast.times is missing or not a list"),
    ({"numpy_fast": {"times": []}}, "extra_info.impls.numpy_fast.times is missing or not a list"),
    ({"numpy_fast": {"times": [1e-3, -1.0]}}, "holds -1.0, not a positive finite number"),
    ({"numpy_fast": {"times": [1e-3, 2e-3]}, "torch": {"times": [1e-3]}}, "different numbers of rounds (1, 2)"),
    ({"numpy_fast": {"times": [1e-3], "scale": 0}}, "extra_info.impls.numpy_fast.scale is 0"),
    ({"pandas": {"times": [1e-3]}}, "'pandas' is not one of"),
    ([1e-3], "extra_info.impls is a list"),
])
def test_a_malformed_interleaved_group_is_one_line_and_exit_2(tmp_path, capsys, impls, fragment):
    data = interleaved({"numpy_fast": [1e-3]})
    data["benchmarks"][0]["extra_info"]["impls"] = impls
    path = write(tmp_path, data)
    assert_one_line_error(*run_cli(capsys, path, "--output", tmp_path / "out"), str(path), "benchmark #0", fragment)
    assert not (tmp_path / "out").exists()


def test_interleaved_kernels_show_each_way_against_the_first():
    data = synthetic()
    data["benchmarks"].append(bench("test_kernel[relu]", 1.0, kind="kernel", kernel="relu mask", shape="N=512",
                                    variants={"registry": {"times": [2e-6, 2e-6, 2e-6]},
                                              "bool": {"times": [1e-6, 3e-6, 2e-6]}}))
    text = benchreport.markdown(benchreport.build(data))
    assert "| relu mask | registry | 2 µs | 1.00 |" in text
    assert "| relu mask | bool | 2 µs | 1.00 (0.50–1.50) |" in text


def test_point_verdicts_judge_one_points_targets_from_its_rounds():
    """1024x4 at batch 512: fast/floor <= 1.10, fast/torch and fast/jax <= 1.03 (on the floor)."""
    times = {"numpy_fast": [1.0, 1.0, 1.0], "floor_numpy": [0.80, 0.85, 0.95],  # fast/floor 1.25, 1.18, 1.05
             "torch": [2.0, 2.0, 2.0], "jax": [0.99, 1.0, 1.02]}                 # 0.5; 1.01, 1.0, 0.98
    rounds = {impl: {"times": t} for impl, t in times.items()}
    assert benchreport.point_verdicts("1024x4", "float32", 512, rounds) == {
        "fast/floor": "noise", "fast/torch": "holds", "fast/jax": "holds"}
    # 2-3-1: no fast/floor target, and fast/jax's limit is 1 there, which the range 0.98–1.01 straddles.
    assert benchreport.point_verdicts("2-3-1", "float32", 512, rounds) == {"fast/torch": "holds",
                                                                          "fast/jax": "noise"}
    # The per-sample loop's times are scaled to the batch, as the report reads them: 2-3-1 at 4096,
    # loop/fast >= 100; 0.5 s on a 1/256 subset is 128 s for the batch, 128 x the fast engine's 1 s.
    loop = {"numpy_fast": {"times": [1.0, 1.0, 1.0]}, "numpy_loop": {"times": [0.5, 0.5, 0.5], "scale": 256}}
    assert benchreport.point_verdicts("2-3-1", "float32", 4096, loop) == {"loop/fast": "holds"}
