"""The fast engine gives the engine's numbers: L and every dWl, dbl, for every activation and loss."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from manual_backprop import engine
from manual_backprop.description.case import make_case
from manual_backprop.description.network import Network
from manual_backprop.engine import fast
from manual_backprop.errors import InputError
from manual_backprop.kernels import ACTIVATIONS, LOSSES, linear
from manual_backprop.kernels.activations import Activation
from manual_backprop.kernels.losses import one_hot

# Relative to the largest entry of the engine's tensor: the two differ only in
# the order of a few sums (and of the BLAS products' accumulation).
TOL = {"float64": 1e-12, "float32": 2e-5}

# (output activation, loss) pairs the network format allows, hidden activations drawn per test.
HEADS = [
    ("identity", "half_mse"), ("identity", "mse"), ("sigmoid", "half_mse"), ("tanh", "mse"),
    ("relu", "half_mse"), ("softmax", "mse"), ("sigmoid", "bce"), ("softmax", "softmax_cross_entropy"),
]
HIDDEN = ["relu", "sigmoid", "tanh", "identity"]


def assert_same_as_engine(case, T=None, workspace=None):
    """Run both engines on ``case`` and compare L and every parameter gradient."""
    ref = engine.run(case)
    L, grads = fast.value_and_grad(case.network, case.params, case.X,
                                   case.T if T is None else T, workspace)
    tol = TOL[case.network.dtype]
    assert L.dtype == ref["L"].dtype
    np.testing.assert_allclose(L, ref["L"], rtol=tol, err_msg="L")
    assert set(grads) == set(case.params)
    for name, g in grads.items():
        want = ref[f"d{name}"]
        assert g.dtype == want.dtype and g.shape == want.shape, name
        np.testing.assert_allclose(g, want, rtol=tol, atol=tol * np.abs(want).max(),
                                   err_msg=f"d{name} ({case.network.describe()}, N={case.batch})")
    return grads


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("head", HEADS, ids=lambda h: f"{h[0]}+{h[1]}")
@pytest.mark.parametrize("batch", [1, 2, 7])
def test_matches_engine_for_every_activation_and_loss(head, batch, dtype):
    rng = np.random.default_rng([batch, len(head[1])])
    hidden = tuple(rng.choice(HIDDEN, size=2))
    sizes = (5, 4, 6, 3)
    net = Network(sizes, hidden + (head[0],), head[1], "mean", dtype)
    assert_same_as_engine(make_case(net, seed=batch, batch=batch))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("act", HIDDEN)
def test_matches_engine_for_each_hidden_activation_and_sum_reduction(act, dtype):
    net = Network((3, 8, 2), (act, "identity"), "half_mse", "sum", dtype)
    assert_same_as_engine(make_case(net, seed=3, batch=5))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_softmax_cross_entropy_takes_labels_or_probability_rows(dtype):
    net = Network((6, 5, 4), ("relu", "softmax"), "softmax_cross_entropy", "mean", dtype)
    case = make_case(net, seed=1, batch=9)
    assert case.Y.ndim == 1
    assert_same_as_engine(case, T=case.Y)  # integer labels
    rng = np.random.default_rng(0)
    P = rng.uniform(0.1, 1, (9, 4))
    P = (P / P.sum(axis=1, keepdims=True)).astype(dtype)
    assert_same_as_engine(make_case(net, X=case.X, Y=P))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_wide_output_and_multithreaded_products(dtype):
    # K >= WIDE_OUTPUT stores the output sample-major; N * n * n >= SINGLE_THREAD_BELOW leaves BLAS threaded.
    net = Network((40, 300, 300, 70), ("relu", "tanh", "identity"), "half_mse", "mean", dtype)
    case = make_case(net, seed=2, batch=32)
    ws = fast.Workspace(net, 32)
    assert ws.output_sample_major and ws.threads is None
    assert_same_as_engine(case, workspace=ws)


def test_workspace_is_reused_and_gives_the_same_numbers_again():
    net = Network((4, 6, 2), ("sigmoid", "identity"), "half_mse")
    case = make_case(net, seed=4, batch=6)
    ws = fast.Workspace(net, 6)
    first = {k: v.copy() for k, v in assert_same_as_engine(case, workspace=ws).items()}
    again = assert_same_as_engine(case, workspace=ws)
    for name in first:
        assert again[name] is ws.grads[name]
        np.testing.assert_array_equal(again[name], first[name])


def test_inputs_are_not_modified():
    net = Network((4, 5, 3), ("relu", "softmax"), "softmax_cross_entropy")
    case = make_case(net, seed=5, batch=4)
    before = {k: v.copy() for k, v in {**case.params, "X": case.X, "T": case.T}.items()}
    T = case.T
    fast.value_and_grad(net, case.params, case.X, T)
    for name, value in {**case.params, "X": case.X, "T": T}.items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)


# A new activation as a test or a user may register it: plain kernels (no out=), and a backward that needs Z.
SOFTSIGN = Activation("softsign", lambda Z: Z / (1 + np.abs(Z)), lambda dA, Z, A: dA / (1 + np.abs(Z)) ** 2,
                      "A = Z / (1 + |Z|)", "{dA} / (1 + |{Z}|)**2")


@pytest.mark.parametrize("acts", [("softsign", "relu", "identity"), ("relu", "tanh", "softsign")])
def test_an_activation_with_plain_kernels_whose_backward_needs_Z_runs_from_a_kept_copy_of_Z(monkeypatch, acts):
    assert "softsign" not in ACTIVATIONS
    monkeypatch.setitem(ACTIVATIONS, "softsign", SOFTSIGN)
    net = Network((3, 4, 4, 2), acts, "half_mse")
    assert_same_as_engine(make_case(net, seed=6, batch=5))


# --- one rule, one place: the fast engine runs the registry's kernels ------------------------------

def _fast_grads(case, T=None):
    L, grads = fast.value_and_grad(case.network, case.params, case.X, case.T if T is None else T)
    return L, {k: v.copy() for k, v in grads.items()}


def test_a_wrong_activation_backward_patched_into_the_registry_runs_in_the_fast_engine_too(monkeypatch):
    net = Network((4, 6, 5, 3), ("relu", "relu", "identity"), "half_mse")
    case = make_case(net, seed=8, batch=7)
    assert (case.X @ case.params["W1"] + case.params["b1"] < 0).any()  # a mask that matters
    L, right = _fast_grads(case)
    monkeypatch.setitem(ACTIVATIONS, "relu", dataclasses.replace(ACTIVATIONS["relu"], backward=lambda dA, Z, A: dA))
    L_wrong, wrong = _fast_grads(case)
    np.testing.assert_array_equal(L_wrong, L)                      # the forward is untouched
    np.testing.assert_array_equal(wrong["W3"], right["W3"])        # above the first ReLU backward
    assert not np.allclose(wrong["W2"], right["W2"]) and not np.allclose(wrong["W1"], right["W1"])
    assert_same_as_engine(case)  # the checking engine runs the same wrong rule: they still agree


def test_a_wrong_loss_gradient_patched_into_the_registry_runs_in_the_fast_engine_too(monkeypatch):
    net = Network((4, 6, 3), ("sigmoid", "identity"), "half_mse")
    case = make_case(net, seed=9, batch=5)
    L, right = _fast_grads(case)

    def wrong(Z, A, T, out=None):  # Y - A: a flipped sign (taking out=, as the registry's kernels do)
        return np.subtract(T, A, out=out)

    monkeypatch.setitem(LOSSES, "half_mse", dataclasses.replace(LOSSES["half_mse"], grad=wrong))
    L_wrong, grads = _fast_grads(case)
    np.testing.assert_array_equal(L_wrong, L)
    for name in right:
        np.testing.assert_allclose(grads[name], -right[name], rtol=1e-12, err_msg=name)
    assert_same_as_engine(case)


def test_a_wrong_cross_entropy_gradient_reaches_the_fast_engine_with_labels_too(monkeypatch):
    net = Network((5, 4, 3), ("tanh", "softmax"), "softmax_cross_entropy")
    case = make_case(net, seed=2, batch=6)
    _, right = _fast_grads(case, case.Y)
    loss = LOSSES["softmax_cross_entropy"]
    monkeypatch.setitem(LOSSES, "softmax_cross_entropy", dataclasses.replace(loss, grad=lambda Z, A, T: A))
    _, wrong = _fast_grads(case, case.Y)
    assert not np.allclose(wrong["W2"], right["W2"])
    assert_same_as_engine(case, T=case.Y)


def _views(x: np.ndarray) -> list[np.ndarray]:
    """x's values sample-major (C order) and feature-major (an (N, n) view of an (n, N) array)."""
    return [x.copy(), np.ascontiguousarray(x.T).T]


def _buffers(like: np.ndarray) -> list[np.ndarray]:
    """Buffers of ``like``'s shape in both layouts, full of NaN (a kernel must not read them before writing)."""
    return [np.full(like.shape, np.nan, like.dtype), np.full(like.shape[::-1], np.nan, like.dtype).T]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_every_activation_kernel_writes_into_out_in_place_and_with_scratch(name, dtype):
    act = ACTIVATIONS[name]
    rng = np.random.default_rng(len(name))
    Z = rng.standard_normal((5, 4)).astype(dtype) * 3
    Z[0, :2] = 0  # exact kinks
    dA = rng.standard_normal(Z.shape).astype(dtype)
    A = act.forward(Z)
    dZ = act.backward(dA, Z, A)
    before = [x.copy() for x in (Z, A, dA)]
    rtol = {"float64": 1e-15, "float32": 1e-6}[dtype]  # a row sum may run in another order in another layout

    def same(got, want):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=0)

    for Zv, dAv, out, scratch in zip(_views(Z), _views(dA), _buffers(Z), _buffers(Z)):
        assert act.forward(Zv, out=out, scratch=scratch) is out
        same(out, A)
        assert act.backward(dAv, Zv, A, out=out, scratch=scratch) is out
        same(out, dZ)
        assert act.backward(dAv, Zv, A, out=dAv, scratch=scratch) is dAv  # dZ over dA
        same(dAv, dZ)
        assert act.forward(Zv, out=Zv, scratch=scratch) is Zv  # A over Z
        same(Zv, A)
        same(act.backward(dA, Z, A, out=out), dZ)  # without scratch
    for x, was in zip((Z, A, dA), before):
        np.testing.assert_array_equal(x, was)
    if act.backward_from_A:  # the promise the fast engine relies on
        same(act.backward(dA, A, A), dZ)
    if act.elementwise:
        same(act.derivative(Z, A) * dA, dZ)
    else:
        assert act.derivative is None


def _central_difference(f, Z: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """d f / d Z_ij for every element, by central differences (f: (N, n) -> scalar), in float64."""
    out = np.empty_like(Z)
    for idx in np.ndindex(Z.shape):
        E = np.zeros_like(Z)
        E[idx] = h
        out[idx] = (f(Z + E) - f(Z - E)) / (2 * h)
    return out


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_every_activation_backward_is_the_derivative_of_its_forward(name):
    # dZ = J^T dA, J from the forward kernel itself: a rule registered tomorrow is judged too
    act = ACTIVATIONS[name]
    rng = np.random.default_rng(len(name) + 1)
    Z = rng.standard_normal((4, 5)) * 2
    if act.kink is not None:  # away from the kink, where the derivative is a convention
        Z[np.abs(Z - act.kink) < 0.1] += 0.3
    dA = rng.standard_normal(Z.shape)
    dZ = act.backward(dA, Z, act.forward(Z))
    np.testing.assert_allclose(dZ, _central_difference(lambda z: (dA * act.forward(z)).sum(), Z),
                               rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_gradient_is_the_derivative_of_its_terms(name):
    # dL/dA (dL/dZ for a fused loss, through its activation) of sum(terms), before the normalisation
    loss = LOSSES[name]
    act = ACTIVATIONS[loss.fused_with or "sigmoid"]
    rng = np.random.default_rng(len(name) + 2)
    Z = rng.standard_normal((4, 3))
    T = _targets(loss, rng, Z.shape, "float64")
    A = act.forward(Z)
    if loss.fused_with:
        want = _central_difference(lambda z: loss.terms(z, act.forward(z), T).sum(), Z)
    else:
        want = _central_difference(lambda a: loss.terms(Z, a, T).sum(), A)
    np.testing.assert_allclose(loss.grad(Z, A, T), want, rtol=1e-6, atol=1e-9)


def _targets(loss, rng, shape, dtype):
    if loss.name == "bce":
        return (rng.uniform(size=shape) > 0.5).astype(dtype)
    if loss.fused_with == "softmax":
        P = rng.uniform(0.1, 1, shape)
        return (P / P.sum(axis=1, keepdims=True)).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_kernel_writes_into_out_and_takes_labels(name, dtype):
    loss = LOSSES[name]
    rng = np.random.default_rng(len(name))
    Z = rng.standard_normal((6, 4)).astype(dtype) * 2
    A = ACTIVATIONS[loss.fused_with or "sigmoid"].forward(Z)
    T = _targets(loss, rng, Z.shape, dtype)
    rtol = {"float64": 1e-13, "float32": 1e-5}[dtype]
    g = loss.grad(Z, A, T)
    for Av, out in zip(_views(A), _buffers(A)):
        assert loss.grad(Z, Av, T, out=out) is out
        np.testing.assert_array_equal(out, g)
        assert loss.grad(Z, Av, T, out=Av) is Av  # the gradient over A
        np.testing.assert_array_equal(Av, g)
        np.testing.assert_array_equal(loss.gradient(Z, A, T, "mean", out=out), loss.gradient(Z, A, T, "mean"))
    c = loss.scale(*Z.shape, "mean")
    np.testing.assert_allclose(loss.value(Z, A, T, "mean"), c * loss.terms(Z, A, T).astype(np.float64).sum(),
                               rtol=rtol)
    np.testing.assert_allclose(loss.value(Z, A, T, "mean", scratch=_buffers(Z)[1]), loss.value(Z, A, T, "mean"),
                               rtol=rtol)
    if loss.labels:
        labels = rng.integers(0, Z.shape[1], Z.shape[0])
        T1 = one_hot(labels, Z.shape[1], Z.dtype)
        g1 = loss.grad(Z, A, T1)
        np.testing.assert_array_equal(loss.grad(Z, A, labels), g1)
        for Av, out in zip(_views(A), _buffers(A)):
            assert loss.grad(Z, Av, labels, out=out) is out
            np.testing.assert_array_equal(out, g1)
            loss.grad(Z, Av, labels, out=Av)
            np.testing.assert_array_equal(Av, g1)
        np.testing.assert_array_equal(loss.terms(Z, A, labels), loss.terms(Z, A, T1))
        np.testing.assert_allclose(loss.value(Z, A, labels, "sum"), loss.value(Z, A, T1, "sum"), rtol=rtol)


def test_wrong_inputs_are_input_errors():
    net = Network((3, 4, 2), ("relu", "identity"), "half_mse")
    case = make_case(net, seed=0, batch=3)
    with pytest.raises(InputError, match="X must be a float64"):
        fast.value_and_grad(net, case.params, case.X.astype(np.float32), case.T)
    with pytest.raises(InputError, match="parameter W2"):
        fast.value_and_grad(net, {**case.params, "W2": case.params["W2"].T}, case.X, case.T)
    with pytest.raises(InputError, match="T must be"):
        fast.value_and_grad(net, case.params, case.X, case.T[:2])
    with pytest.raises(InputError, match="workspace is for"):
        fast.value_and_grad(net, case.params, case.X, case.T, fast.Workspace(net, 4))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_one_row_batch_with_a_large_outer_product(dtype):
    # dW1 (30 x 800) is a GEMM with its inner dimension padded with zeros; dW2 (800 x 800) is einsum's.
    assert 800 * 800 >= linear.EINSUM_OUTER > 30 * 800 >= linear.PADDED_OUTER and 800 >= linear.EINSUM_ROW
    net = Network((30, 800, 800, 5), ("relu", "sigmoid", "softmax"), "softmax_cross_entropy", "mean", dtype)
    assert_same_as_engine(make_case(net, seed=7, batch=1))


def test_a_wrong_linear_rule_patched_into_the_kernels_runs_in_the_fast_engine_too(monkeypatch):
    case = make_case(Network((3, 4, 2), ("tanh", "identity"), "half_mse"), seed=1, batch=5)
    _, right = fast.value_and_grad(case.network, case.params, case.X, case.T)
    right = {k: v.copy() for k, v in right.items()}
    real = linear.linear_db
    monkeypatch.setattr(linear, "linear_db", lambda dZ, out=None, ones=None: np.multiply(real(dZ, out, ones), 2, out=out))
    _, wrong = fast.value_and_grad(case.network, case.params, case.X, case.T)
    np.testing.assert_allclose(wrong["b1"], 2 * right["b1"])
    np.testing.assert_array_equal(wrong["W1"], right["W1"])


@pytest.mark.parametrize("N", [1, 6])
def test_the_linear_kernels_write_into_out_in_either_layout_with_or_without_ones(N):
    rng = np.random.default_rng(N)
    A, W, b, dZ = rng.standard_normal((N, 3)), rng.standard_normal((3, 4)), rng.standard_normal(4), rng.standard_normal((N, 4))
    for out in (np.empty((N, 4)), np.empty((4, N)).T):
        np.testing.assert_allclose(linear.linear_forward(A, W, b, out=out), A @ W + b, rtol=1e-15)
    for out in (np.empty((3, 4)), np.empty((4, 3)).T):
        np.testing.assert_allclose(linear.linear_dW(A, dZ, out=out), A.T @ dZ, rtol=1e-14)
    for ones in (None, np.ones(N)):
        np.testing.assert_allclose(linear.linear_db(dZ, out=np.empty(4), ones=ones), dZ.sum(axis=0), rtol=1e-14)
        one_unit = dZ[:, :1]  # a one-unit layer: one column, N rows
        np.testing.assert_allclose(linear.linear_db(one_unit, out=np.empty(1), ones=ones), one_unit.sum(axis=0),
                                   rtol=1e-14)
    for out in (np.empty((N, 3)), np.empty((3, N)).T):
        np.testing.assert_allclose(linear.linear_dA_prev(dZ, W, out=out), dZ @ W.T, rtol=1e-14)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("layout", ["C", "F"])
@pytest.mark.parametrize("m, n, path", [(300, 40, "padded GEMM"), (600, 512, "einsum")])
def test_a_large_outer_product_is_exactly_the_broadcast_product(dtype, layout, m, n, path):
    """``[a, 0, 0, 0] @ [b; 0; 0; 0]`` adds exact zeros to each a_i b_j, and einsum's sum over one term is
    that term: the very same numbers, specials too."""
    rng = np.random.default_rng(3)
    assert m * n >= linear.PADDED_OUTER
    assert (m * n >= linear.EINSUM_OUTER and min(m, n) >= linear.EINSUM_ROW) == (path == "einsum")
    a = rng.standard_normal((m, 1)).astype(dtype)
    b = rng.standard_normal((1, n)).astype(dtype)
    a[:4, 0] = [np.inf, -np.inf, np.nan, 0.0]
    b[0, :2] = [0.0, 1e-30]
    out = np.empty((m, n), dtype, order=layout)
    with np.errstate(invalid="ignore"):
        linear.matmul_into(a, b, out)
        want = a * b
    np.testing.assert_array_equal(out, want)  # NaN where inf * 0, as the broadcast product has it
