"""The pytest plugin, as a user meets it: installed, its fixtures are there with no import, and a failing
``assert_layer_matches`` points at the user's own line with the report as its message.

Each test writes a small test file and runs pytest on it in a fresh process (``pytester``), so the
plugin is found the way a user's pytest finds it: through the installed ``pytest11`` entry point.
"""

from __future__ import annotations

from pathlib import Path

import manual_backprop

pytest_plugins = ["pytester"]

SHIPPED = sorted(p.stem for p in (Path(manual_backprop.__file__).parent / "examples").glob("*.toml"))


def test_the_backprop_case_fixture_runs_a_test_once_per_shipped_network_with_no_import(pytester):
    pytester.makepyfile(test_user="""
        def test_inputs_fit_the_network(backprop_case):
            net = backprop_case.network
            assert backprop_case.X.shape == (backprop_case.batch, net.sizes[0])
            assert set(backprop_case.params) == {f"{p}{l}" for l in range(1, net.depth + 1) for p in "Wb"}

        def test_names(backprop_example):
            assert backprop_example.startswith("seed-")
    """)
    result = pytester.runpytest_subprocess("-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2 * len(SHIPPED))
    assert len(SHIPPED) >= 6
    for name in SHIPPED:
        result.stdout.fnmatch_lines([f"*test_inputs_fit_the_network?{name}? PASSED*"])


def test_a_failing_layer_assertion_shows_the_report_at_the_callers_line(pytester):
    # A ReLU backward with the mask left out: dx = dout, where the truth is dout * (x > 0).
    pytester.makepyfile(test_user="""
        import numpy as np
        from manual_backprop.testing import assert_layer_matches

        def relu_forward(x, params):
            return np.maximum(x, 0), x

        def relu_backward(dout, cache):
            return dout

        def test_my_relu():
            assert_layer_matches(relu_forward, relu_backward, layer="relu", against=("torch",))
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines([
        ">*assert_layer_matches(relu_forward, relu_backward, layer=\"relu\", against=(\"torch\",))",
        "E*AssertionError: relu layer, random trial*dx*",
    ])
    assert "manual_backprop/testing" not in out  # no frame of the tool's own
