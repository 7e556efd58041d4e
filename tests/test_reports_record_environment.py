"""Reproducible reports: a check records what is needed to rerun it elsewhere, in JSON and on one human line."""

from __future__ import annotations

import io
import platform

import numpy as np

from manual_backprop.checking.checker import check
from manual_backprop.cli.check import render
from manual_backprop.environment import summary

from .helpers import case_of


def test_the_json_report_records_seed_versions_blas_and_threads():
    report = check(case_of((2, 3, 1), ("tanh", "identity"), "half_mse", seed=5), against=["fd"])
    env = report.to_json()["environment"]
    assert env["seed"] == 5
    assert env["python"] == platform.python_version() and env["numpy"] == np.__version__
    for key in ("torch", "jax", "jaxlib", "blas", "platform"):
        assert key in env
    assert env["threads"]["cpu_count"] >= 1
    assert any(k != "cpu_count" for k in env["threads"])  # the BLAS pool and its thread count


def test_the_human_report_shows_the_environment_on_one_line():
    report = check(case_of((2, 3, 1), ("tanh", "identity"), "half_mse", seed=5), against=["fd"])
    out = io.StringIO()
    render(report, file=out)
    line = summary(report.environment)
    assert "\n" not in line
    for part in (f"Python {platform.python_version()}", f"NumPy {np.__version__}", "BLAS ", "seed 5", "CPUs"):
        assert part in line
    assert f"environment: {line}" in out.getvalue().splitlines()
