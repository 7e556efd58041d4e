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
            assert set(backprop_case.params) == set(net.parameter_shapes())  # W1, b1, ... (gamma1, beta1 of a norm)
            assert {f"{p}{l}" for l in range(1, net.depth + 1) for p in "Wb"} <= set(backprop_case.params)

        def test_names(backprop_example):
            from manual_backprop.description.catalog import example_names

            assert backprop_example in example_names()
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


def test_a_failing_network_assertion_shows_the_validate_table_at_the_callers_line(pytester):
    # A course-style two-layer class whose backward leaves the ReLU mask out (dA1 used as dZ1).
    pytester.makepyfile(test_user="""
        import numpy as np
        from manual_backprop import Network
        from manual_backprop.testing import assert_network_matches

        class TwoLayerNet:
            def __init__(self):
                self.params = {}

            def loss(self, X, y):
                W1, b1, W2, b2 = (self.params[k] for k in ("W1", "b1", "W2", "b2"))
                Z1 = X @ W1 + b1
                A1 = np.maximum(Z1, 0)
                Z2 = A1 @ W2 + b2
                P = np.exp(Z2 - Z2.max(axis=1, keepdims=True))
                P /= P.sum(axis=1, keepdims=True)
                N = X.shape[0]
                loss = -np.log(P[np.arange(N), y]).mean()
                dZ2 = P.copy()
                dZ2[np.arange(N), y] -= 1
                dZ2 /= N
                dA1 = dZ2 @ W2.T
                dZ1 = dA1  # the ReLU mask left out
                return loss, {"W1": X.T @ dZ1, "b1": dZ1.sum(0), "W2": A1.T @ dZ2, "b2": dZ2.sum(0)}

        def test_my_net():
            net = Network((4, 5, 3), ("relu", "softmax"), "softmax_cross_entropy")
            assert_network_matches(TwoLayerNet(), net, float32=False)
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        ">*assert_network_matches(TwoLayerNet(), net, float32=False)",
        "E*AssertionError: *",
        "E*First wrong: dW1*",
        "E*ReLU mask left out*",
    ])
    assert "manual_backprop/testing" not in result.stdout.str()
