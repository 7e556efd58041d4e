"""Numerical extremes: saturated logits, overflow-prone kernels, and subnormals flushed by JAX.

Logits of ±1e3 (float64) and ±100 (float32) saturate sigmoid and softmax
completely. The engine computes bce and cross-entropy from the logits, so the
loss stays finite and the gradient is the exact ``(A - Y) / n``; each case is
set beside torch's own ``BCEWithLogitsLoss`` and ``cross_entropy`` (and is
checked against torch, JAX and finite differences). Where one framework
flushes a subnormal to zero (JAX on the CPU), the tolerance's floor covers
the difference, and the test shows that it is the floor, not luck.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from manual_backprop import Network, make_case, run
from manual_backprop.checking.checker import check
from manual_backprop.compare import FLOOR, K, error_scales
from manual_backprop.kernels.activations import sigmoid_forward, softmax_forward
from manual_backprop.kernels.losses import LOSSES

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
    assert all(np.isfinite(trace[n]).all() for n in case.network.names() if n != "Y")
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


def test_a_subnormal_that_jax_flushes_to_zero_passes_because_of_the_floor_not_the_rounding_estimate():
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
    assert K * E < diff <= FLOOR["float32"]  # the rounding estimate alone would fail it; the floor passes it


def test_without_the_floor_the_flushed_subnormal_would_fail(monkeypatch):
    monkeypatch.setitem(FLOOR, "float32", 1e-300)  # no floor to speak of (0 would divide by zero)
    report = check(subnormal_case(), against=["jax"])
    assert not report.ok
    assert report.first_divergence == "A1"
    assert report.checks["A1"]["jax"].worst.index == (0, 0)


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
