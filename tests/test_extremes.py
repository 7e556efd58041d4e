"""Numerical extremes: saturated logits, overflow-prone kernels, subnormals flushed by JAX, overflow.

Logits of ±1e3 (float64) and ±100 (float32) saturate sigmoid and softmax
completely. The engine computes bce and cross-entropy from the logits, so the
loss stays finite and the gradient is the exact ``(A - Y) / n``; each case is
set beside torch's own ``BCEWithLogitsLoss`` and ``cross_entropy`` (and is
checked against torch, JAX and finite differences).

A reference's own inaccuracy is not the engine's bug. Where one framework
flushes a subnormal to zero (JAX on the CPU), the tolerance's flush range
covers the difference, also where later products multiply it far beyond the
floor; where JAX evaluates a function in the log domain (its bce gradient),
the tolerance allows the few ulps of ``max(|Z|, 1)`` that costs. Each test
shows that it is that part of the policy, not luck: without it the same
correct network is rejected.

Values that leave the dtype's range are an input error, judged where the
first non-finite value appears: exit 2 and one line naming the tensor and the
network's own dtype, never a failing engine, never a warning.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from manual_backprop import Network, make_case, parse_case, run
from manual_backprop.checking.checker import check
from manual_backprop.checking.overflow import ensure_step_representable
from manual_backprop.compare import FLOOR, K, error_scales
from manual_backprop.errors import InputError
from manual_backprop.kernels.activations import sigmoid_forward, softmax_forward
from manual_backprop.kernels.losses import LOSSES

policy = importlib.import_module("manual_backprop.compare.tolerance")  # the module (compare.tolerance is a function)
FLUSH = policy.FLUSH

LOGIT = {"float64": 1e3, "float32": 100.0}
NO_OVERFLOW = dict(over="raise", divide="raise", invalid="raise")  # underflow to 0 is the right answer


def saturated_case(loss: str, dtype: str):
    """A 3-4-K network whose logits are ±LOGIT[dtype] (set by b2), targets on both sides of saturation."""
    M = LOGIT[dtype]
    dt = np.dtype(dtype)
    rng = np.random.default_rng(7)
    if loss == "bce":
        net = Network((3, 4, 2), ("tanh", "sigmoid"), "bce", "mean", dtype)
        b2 = np.array([M, -M])
        Y = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.5, 0.5]])  # wrong, right, half-wrong, ...
    else:
        net = Network((3, 4, 3), ("tanh", "softmax"), "softmax_cross_entropy", "mean", dtype)
        b2 = np.array([M, -M, 0.0])
        Y = np.array([0, 1, 2, 0, 1])  # label 0 is the saturated winner, 1 the far loser
    params = {"W1": rng.standard_normal((3, 4)), "b1": rng.uniform(-0.5, 0.5, 4),
              "W2": 0.1 * rng.standard_normal((4, net.sizes[-1])), "b2": b2}
    params = {k: v.astype(dt) for k, v in params.items()}
    X = rng.standard_normal((5, 3)).astype(dt)
    return make_case(net, params, X, Y.astype(dt) if loss == "bce" else Y)


def torch_side_by_side(case, trace):
    """Torch's own fused loss on the engine's logits: its value and its gradient with respect to the logits."""
    Z = torch.from_numpy(trace["Z2"].copy()).requires_grad_()
    if case.network.loss == "bce":
        L = torch.nn.BCEWithLogitsLoss()(Z, torch.from_numpy(case.Y))
    else:
        L = F.cross_entropy(Z, torch.from_numpy(case.Y))
    L.backward()
    return L.detach().numpy(), Z.grad.numpy()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("loss", ["bce", "softmax_cross_entropy"])
def test_saturated_logits_give_a_finite_loss_and_gradients_equal_to_torchs_fused_loss(loss, dtype):
    case = saturated_case(loss, dtype)
    with np.errstate(**NO_OVERFLOW):
        trace = run(case)
    assert np.abs(trace["Z2"]).max() >= 0.99 * LOGIT[dtype]
    # (but dL/dA2 of the loss written from A2, infinite where A2 is exactly 0 or 1: tests/test_dAL.py)
    assert all(np.isfinite(trace[n]).all() for n in case.network.names() if n not in ("Y", "dA2"))
    L_torch, dZ_torch = torch_side_by_side(case, trace)
    rtol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(trace["L"], L_torch, rtol=rtol, atol=0)
    np.testing.assert_allclose(trace["dZ2"], dZ_torch, rtol=rtol, atol=FLOOR[dtype])
    # saturation in the wrong direction costs about the logit; the gradient there is the full ±1/n
    assert trace["L"] > 0.1 * LOGIT[dtype]
    assert np.abs(trace["dZ2"]).max() == pytest.approx(1 / case.Y.shape[0] / (2 if loss == "bce" else 1), rel=1e-6)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("loss", ["bce", "softmax_cross_entropy"])
def test_saturated_logits_agree_with_torch_jax_and_finite_differences_on_every_tensor(loss, dtype):
    report = check(saturated_case(loss, dtype), against=["torch", "jax", "fd"])
    assert report.ok, {n: {r: (c.status, c.margin) for r, c in per.items()} for n, per in report.checks.items()}


def test_torch_BCELoss_on_a_saturated_float32_sigmoid_loses_the_gradient_that_the_engine_keeps():
    # Why the references take logits: BCELoss clamps log(0) at -100 and returns 0 instead of 0.5.
    z = torch.tensor([[40.0], [-40.0]], requires_grad=True)
    y = torch.tensor([[0.0], [1.0]])
    F.binary_cross_entropy(torch.sigmoid(z), y).backward()
    assert z.grad.abs().max() < 1e-5
    Zn, Yn = z.detach().numpy(), y.numpy()
    dZ = LOSSES["bce"].gradient(Zn, sigmoid_forward(Zn), Yn, "mean")
    np.testing.assert_array_equal(dZ, [[0.5], [-0.5]])


# up to half the largest float: the spread of a row of logits, Z - max(Z), must itself be a float
@pytest.mark.parametrize("dtype,big", [("float64", 1e3), ("float64", 8e307), ("float32", 100.0), ("float32", 1.7e38)])
def test_sigmoid_softmax_and_the_fused_losses_never_overflow_or_warn(dtype, big):
    Z = np.array([[big, -big, 0.0], [-big, -big, big]], dtype=dtype)
    T = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=dtype)
    with np.errstate(**NO_OVERFLOW):
        A = sigmoid_forward(Z)
        P = softmax_forward(Z)
        bce = LOSSES["bce"].terms(Z, A, T)
        ce = LOSSES["softmax_cross_entropy"].terms(Z, P, T)
    np.testing.assert_allclose(A, [[1, 0, 0.5], [0, 0, 1]], rtol=0, atol=FLOOR[dtype])  # e^-100 is subnormal in float32
    np.testing.assert_allclose(P[0], [1, 0, 0], rtol=0, atol=FLOOR[dtype])
    assert P.dtype == A.dtype == np.dtype(dtype)
    assert np.isfinite(bce).all() and np.isfinite(ce).all()
    assert bce[1, 2] == pytest.approx(big)  # log(1 + e^big) - 0, taken without computing e^big


def subnormal_case():
    """float32, sigmoid hidden layer with Z1 = -88.5: sigmoid is 3.7e-39, a subnormal, which JAX flushes to 0."""
    net = Network((1, 2, 1), ("sigmoid", "identity"), "half_mse", "mean", "float32")
    f32 = lambda a: np.array(a, np.float32)  # noqa: E731
    params = {"W1": f32([[-88.5, 1.0]]), "b1": f32([0.0, 0.0]), "W2": f32([[1.0], [1.0]]), "b2": f32([0.0])}
    return make_case(net, params, f32([[1.0], [0.5]]), f32([[0.1], [0.2]]))


def test_a_subnormal_that_jax_flushes_to_zero_passes_because_of_the_flush_range_not_the_rounding_estimate(
        monkeypatch):
    case = subnormal_case()
    report = check(case, against=["torch", "jax"])
    assert report.ok
    mine = report.trace["A1"][0, 0]
    assert 0 < mine < np.finfo(np.float32).tiny  # subnormal in NumPy
    jax_check = report.checks["A1"]["jax"]
    assert jax_check.worst.index == (0, 0) and jax_check.worst.reference == 0.0  # flushed by JAX
    assert report.checks["A1"]["torch"].max_abs_err == 0.0  # torch keeps subnormals
    diff = float(mine)
    E = error_scales(case.network, case.params, report.trace, case.T)["A1"][0, 0]
    monkeypatch.setitem(FLUSH, "float32", 0.0)
    E_rounding = error_scales(case.network, case.params, report.trace, case.T)["A1"][0, 0]
    assert K * E_rounding < diff <= K * E  # the rounding estimate alone would fail it; the flush range passes it
    assert diff <= FLOOR["float32"]  # (and here, where nothing multiplies it, the floor would too)


def test_without_the_floor_and_the_flush_range_the_flushed_subnormal_would_fail(monkeypatch):
    monkeypatch.setitem(FLOOR, "float32", 1e-300)  # no floor to speak of (0 would divide by zero)
    monkeypatch.setitem(FLUSH, "float32", 0.0)
    report = check(subnormal_case(), against=["jax"])
    assert not report.ok
    assert report.first_divergence == "A1"
    assert report.checks["A1"]["jax"].worst.index == (0, 0)


# --- a reference's own inaccuracy, reproduced exactly ----------------------------------------------

def bce_at_logit_case(logit: float = -33.5):
    """float64, one sigmoid unit with bce, target 1, at the logit given: the correct side's far end."""
    net = Network((1, 1), ("sigmoid",), "bce", "mean", "float64")
    return make_case(net, {"W1": np.array([[1.0]]), "b1": np.array([0.0])}, np.array([[logit]]), np.array([[1.0]]))


def test_jax_makes_the_float64_bce_gradient_at_logit_minus_33_5_exactly_minus_1_and_the_engine_still_passes():
    case = bce_at_logit_case()
    report = check(case, against=["torch", "jax"])
    assert report.ok, {n: {r: c.status for r, c in per.items()} for n, per in report.checks.items()}
    mine, jax_dZ = report.checks["dZ1"]["jax"].worst.engine, report.checks["dZ1"]["jax"].worst.reference
    assert mine == -0.99999999999999722 == float(1 / (1 + np.exp(33.5))) - 1  # the truth, to the last bit
    assert jax_dZ == -1.0  # exp(x - logaddexp(x, 0)) rounds its exponent at the scale of |x| = 33.5: 25 ulps
    assert report.checks["dZ1"]["jax"].max_abs_err > 10 * 2.0**-53 * 2  # far beyond rounding dZ itself
    assert report.checks["dZ1"]["torch"].max_abs_err <= 2.0**-53  # torch's sigmoid(Z) - T is exact here


def test_without_the_log_domain_allowance_the_bce_case_is_rejected(monkeypatch):
    monkeypatch.setattr(policy, "LOG_DOMAIN_GRADIENT", {})
    report = check(bce_at_logit_case(), against=["jax"])
    assert not report.ok and report.first_divergence == "dZ1"


def sigmoid_at_minus_87_case():
    """float32 sigmoid at Z1 = -87 from X = 87: A1 = 1.6e-38 is normal, dZ1 = dA1 A1 (1 - A1) subnormal."""
    net = Network((1, 1, 1), ("sigmoid", "identity"), "half_mse", "mean", "float32")
    f32 = lambda a: np.array(a, np.float32)  # noqa: E731
    params = {"W1": f32([[-1.0]]), "b1": f32([0.0]), "W2": f32([[0.5]]), "b2": f32([0.0])}
    return make_case(net, params, f32([[87.0]]), f32([[0.3]]))


def test_jax_flushes_a_subnormal_dZ_that_times_X_87_leaves_the_floor_and_the_engine_still_passes(monkeypatch):
    case = sigmoid_at_minus_87_case()
    report = check(case, against=["torch", "jax"])
    assert report.ok
    dZ1, dW1 = report.trace["dZ1"][0, 0], report.trace["dW1"][0, 0]
    assert 0 < abs(dZ1) < np.finfo(np.float32).tiny  # subnormal in NumPy
    jax_dW1 = report.checks["dW1"]["jax"]
    assert jax_dW1.worst.reference == 0.0  # JAX flushed dZ1 to 0, so its dW1 = X * 0
    assert abs(dW1) == pytest.approx(87 * abs(dZ1), rel=1e-6)
    assert jax_dW1.max_abs_err > FLOOR["float32"]  # the product carried the flush beyond the floor
    monkeypatch.setitem(FLUSH, "float32", 0.0)  # the policy without the flush range rejects it there
    report = check(case, against=["jax"])
    assert not report.ok and report.first_divergence == "dW1"


@pytest.mark.parametrize("dtype,logit", [("float32", -50.0), ("float64", -200.0)])
def test_torch_makes_a_saturated_bce_loss_exactly_0_and_the_engine_still_passes(dtype, logit, monkeypatch):
    # torch takes (1 - T) Z - log_sigmoid(Z): two values of size |Z| that cancel, leaving 0 for e**Z
    f = lambda a: np.array(a, dtype)  # noqa: E731
    net = Network((1, 1), ("sigmoid",), "bce", "sum", dtype)
    case = make_case(net, {"W1": f([[1.0]]), "b1": f([0.0])}, f([[logit], [logit / 2]]), f([[0.0], [0.0]]))
    report = check(case, against=["torch", "jax"])
    assert report.ok
    assert report.checks["L"]["torch"].worst.reference == 0.0 < report.trace["L"]  # the truth, e**Z + e**(Z/2)
    assert report.checks["L"]["jax"].max_abs_err <= 2 * float(np.finfo(dtype).eps) * report.trace["L"]
    monkeypatch.setattr(policy, "LOG_DOMAIN_LOSS", {})
    report = check(case, against=["torch"])
    assert not report.ok and report.first_divergence == "L"


# --- overflow: an input error, judged where the first non-finite value appears ---------------------

def deep_identity_file(dtype: str, weight: str, layers: int = 20, sgd: str = "") -> str:
    acts = ", ".join(['"identity"'] * layers)
    params = "\n".join(f"W{l} = [[{weight}]]\nb{l} = [0.0]" for l in range(1, layers + 1))
    return (f'[network]\nsizes = [{", ".join(["1"] * (layers + 1))}]\nactivations = [{acts}]\n'
            f'loss = "half_mse"\ndtype = "{dtype}"\n[parameters]\n{params}\n[data]\nX = [[1.0]]\nY = [[0.5]]\n'
            + sgd)


@pytest.mark.parametrize("dtype,weight", [("float64", "1e300"), ("float32", "1e30")])
def test_twenty_layers_that_overflow_even_the_wider_type_are_an_input_error_at_the_first_inf(dtype, weight):
    # 1e300 ** 20 overflows long double too (at Z17), and 1e30 ** 20 float64 (at Z11): the first Inf,
    # Z2, is what counts, and its magnitudes |A1| @ |W2| are beyond the network's own dtype
    case = parse_case(deep_identity_file(dtype, weight), "deep.toml")
    with pytest.raises(InputError) as info:
        check(case, against=["torch", "jax"])
    message = str(info.value)
    assert message.startswith(f"deep.toml: the values overflow {dtype}: Z2 is Inf at index [0, 0] (|A1| @ |W2|")
    assert "\n" not in message
    other = "float32" if dtype == "float64" else "float64"
    assert other not in message  # the network's own dtype, and no other (float64 would not absorb it either)


def test_the_command_line_exits_2_with_one_line_and_no_warning_for_the_deep_overflow(tmp_path):
    (tmp_path / "deep.toml").write_text(deep_identity_file("float64", "1e300"), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-W", "error", "-m", "manual_backprop", "check", "deep.toml",
                           "--against", "torch,jax"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "the values overflow float64: Z2 is Inf" in proc.stderr and "Warning" not in proc.stderr


def test_a_float32_overflow_that_float64_absorbs_says_so_and_names_float32_first():
    case = parse_case(deep_identity_file("float32", "1e30", layers=2), "two.toml")  # 1e60: finite in float64
    with pytest.raises(InputError, match=r'^two\.toml: the values overflow float32: Z2 is Inf .* or use dtype = '
                                         r'"float64", where every value of this case is finite$'):
        check(case, against=["torch"])


def test_magnitudes_that_cancel_in_the_values_but_overflow_the_scales_name_the_networks_own_dtype():
    # every Z is exactly 0 (x1 a - x2 a), while |A| @ |W| compounds by 2e30 a layer: E overflows float64
    layers = 12
    net = Network((2,) * (layers + 1), ("identity",) * layers, "half_mse", "mean", "float32")
    W = np.array([[1e30, -1e30], [1e30, -1e30]], np.float32)
    params = {k: (W if k.startswith("W") else np.zeros(2, np.float32)) for k in net.parameter_shapes()}
    case = make_case(net, params, np.array([[1.0, -1.0]], np.float32), np.array([[0.5, 0.5]], np.float32))
    assert all(np.isfinite(v).all() for v in run(case).values() if np.asarray(v).dtype.kind == "f")
    with pytest.raises(InputError, match=r"^<options>: Z\d+ cannot be judged in float32: the magnitudes behind it"):
        check(case, against=["torch"])


def test_a_learning_rate_whose_step_overflows_is_an_input_error_naming_the_parameter_and_the_dtype():
    sgd = "[sgd]\nlearning_rate = 1.7e308\n"
    case = parse_case(deep_identity_file("float64", "2.0", layers=2, sgd=sgd), "lr.toml")  # dW1 = 2: lr dW1 > max
    with pytest.raises(InputError, match=r"^lr\.toml: the values overflow float64: W1_next would be Inf at index "
                                         r"\[0, 0\] \(W1 - lr \* dW1 with lr = 1\.7e\+308"):
        check(case, against=["torch"])
    trace = run(case)
    with pytest.raises(InputError, match="W1_next would be Inf"):  # what the checker runs for --lr
        ensure_step_representable(case, 1.7e308, trace)
    ensure_step_representable(case, 0.1, trace)  # a step that fits: nothing to say


def test_a_nan_that_a_wrong_rule_makes_from_representable_numbers_is_still_a_failing_engine(monkeypatch):
    import dataclasses

    from manual_backprop.kernels import ACTIVATIONS

    # dZ = dA / (A (1 - A)): Inf where float32 saturates A to exactly 1; the same inputs make it in float64 too
    monkeypatch.setitem(ACTIVATIONS, "sigmoid", dataclasses.replace(
        ACTIVATIONS["sigmoid"], backward=lambda dA, Z, A: dA / (A * (1 - A))))
    net = Network((1, 1, 1), ("sigmoid", "identity"), "half_mse", "mean", "float32")
    f32 = lambda a: np.array(a, np.float32)  # noqa: E731
    case = make_case(net, {"W1": f32([[1.0]]), "b1": f32([0.0]), "W2": f32([[1.0]]), "b2": f32([0.0])},
                     f32([[40.0]]), f32([[0.3]]))
    report = check(case, against=["torch"])
    assert not report.ok and report.first_divergence == "dZ1"
    assert report.checks["dZ1"]["torch"].status == "nonfinite"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("loss", ["bce", "softmax_cross_entropy"])
def test_the_fast_engine_stays_finite_at_saturated_logits_and_equals_the_engine(loss, dtype):
    from manual_backprop.engine import fast

    case = saturated_case(loss, dtype)
    with np.errstate(**NO_OVERFLOW):
        trace = run(case)
        L, grads = fast.value_and_grad(case.network, case.params, case.X, case.T)
    rtol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(L, trace["L"], rtol=rtol)
    for name, g in grads.items():
        np.testing.assert_allclose(g, trace[f"d{name}"], rtol=rtol, atol=rtol * np.abs(trace[f"d{name}"]).max())
