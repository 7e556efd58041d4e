"""JAX's persistent compilation cache: on by default in the user's cache folder, elsewhere or off on request."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("jax")

RUN = ("from manual_backprop import check, load_example\n"
       "from manual_backprop.references import jax_ref\n"
       "assert check(load_example('seed-002'), against=['jax']).ok\n"
       "print(jax_ref.CACHE)\n")


def _run(env: dict) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MANUAL_BACKPROP_JAX_CACHE"} | env
    done = subprocess.run([sys.executable, "-c", RUN], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_cache_lives_in_the_users_cache_folder_and_is_filled_by_a_run(tmp_path):
    where = _run({"XDG_CACHE_HOME": str(tmp_path)})
    assert where == str(tmp_path / "manual_backprop" / "jax")
    assert any((tmp_path / "manual_backprop" / "jax").iterdir())  # the compiled gradient function
    assert _run({"XDG_CACHE_HOME": str(tmp_path)}) == where        # a second run reads it back, still right


def test_the_cache_can_be_moved_or_turned_off(tmp_path):
    assert _run({"MANUAL_BACKPROP_JAX_CACHE": str(tmp_path / "here")}) == str(tmp_path / "here")
    assert any((tmp_path / "here").iterdir())
    assert _run({"MANUAL_BACKPROP_JAX_CACHE": "off", "XDG_CACHE_HOME": str(tmp_path / "x")}) == "None"
    assert not (tmp_path / "x").exists()
