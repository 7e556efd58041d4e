"""The command line's check with torch and JAX in processes of their own: the same report, no framework here."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("jax")

RUN = ("import json, sys\n"
       "from manual_backprop.cli import main\n"
       "code = main(sys.argv[1:])\n"
       "sys.stderr.write(json.dumps({'code': code, 'torch': 'torch' in sys.modules, 'jax': 'jax' in sys.modules}))\n")


def _check(*args: str, parallel: bool) -> tuple[dict, dict]:
    env = {k: v for k, v in os.environ.items() if k != "MANUAL_BACKPROP_PARALLEL"}
    if not parallel:
        env["MANUAL_BACKPROP_PARALLEL"] = "off"
    done = subprocess.run([sys.executable, "-c", RUN, "check", *args, "--json"], env=env, capture_output=True,
                          text=True, timeout=300)
    return json.loads(done.stdout), json.loads(done.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [(), ("--sizes", "4,5,3", "--activations", "relu,softmax",
                                      "--loss", "softmax_cross_entropy", "--dtype", "float32")])
def test_the_workers_give_the_same_report_and_this_process_imports_no_framework(args):
    serial, here = _check(*args, parallel=False)
    parallel, there = _check(*args, parallel=True)
    assert here == {"code": 0, "torch": True, "jax": True}
    assert there == {"code": 0, "torch": False, "jax": False}
    assert parallel["references"] == serial["references"] == ["torch", "jax", "fd"]
    for name, tensor in serial["tensors"].items():
        assert parallel["tensors"][name]["value"] == tensor["value"]
        for ref, c in tensor["checks"].items():
            mine = parallel["tensors"][name]["checks"][ref]
            assert (mine["status"], mine["max_abs_err"]) == (c["status"], c["max_abs_err"]), (name, ref)
    assert any(k.startswith("import:torch") for k in parallel["timings_s"])


def test_a_missing_reference_named_in_against_is_still_one_line_from_a_worker(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MANUAL_BACKPROP_PARALLEL"}
    done = subprocess.run([sys.executable, "-m", "manual_backprop", "check", "--device", "cuda"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
