"""The L2 kernels against the course's published numbers and against torch autograd.

The course's two-layer test network (weights from ``np.linspace``, written out below) publishes its
loss as 3.4702243556 without regularisation and 26.5948426952 with ``reg = 1.0`` under ½λΣW²; its
port publishes 49.719461034881775 under λΣW². The penalties are the differences (each published
value is good to half a unit in its last place, 5e-11).
"""

from __future__ import annotations

import numpy as np
import pytest

from manual_backprop.kernels.regularization import l2_gradient, l2_penalty

D, H, C = 5, 50, 7
COURSE = {
    "W1": np.linspace(-0.7, 0.3, num=D * H).reshape(D, H), "b1": np.linspace(-0.1, 0.9, num=H),
    "W2": np.linspace(-0.3, 0.4, num=H * C).reshape(H, C), "b2": np.linspace(-0.9, 0.1, num=C),
}
DATA_LOSS = 3.4702243556


def test_the_half_convention_gives_the_courses_published_loss():
    assert abs(float(l2_penalty([COURSE["W1"], COURSE["W2"]], 1.0, "half")) - (26.5948426952 - DATA_LOSS)) <= 1e-10


def test_the_full_convention_gives_the_ports_published_loss():
    assert abs(float(l2_penalty([COURSE["W1"], COURSE["W2"]], 1.0, "full")) - (49.719461034881775 - DATA_LOSS)) <= 1e-10


def test_biases_add_their_own_squares_when_covered():
    with_b = float(l2_penalty(COURSE.values(), 1.0, "half"))
    # ½ Σ b² of the two linspace biases, added: arithmetic on the written-out arrays
    extra = 0.5 * (float((COURSE["b1"] ** 2).sum()) + float((COURSE["b2"] ** 2).sum()))
    assert abs(with_b - float(l2_penalty([COURSE["W1"], COURSE["W2"]], 1.0, "half")) - extra) <= 1e-12 * with_b


@pytest.mark.parametrize("convention", ["half", "full"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_gradient_is_torch_autograd_of_the_penalty_written_as_maths(convention, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    W = rng.standard_normal((4, 3)).astype(dtype)
    w = torch.tensor(W, requires_grad=True)
    factor = {"half": 0.5, "full": 1.0}[convention]
    (factor * 0.3 * (w ** 2).sum()).backward()
    ours = l2_gradient(W, 0.3, convention)
    assert ours.dtype == np.dtype(dtype)
    # λW and 2λW are one rounded product each; torch computes 2 · (f λ) · w: within 2 ulps of each entry
    np.testing.assert_allclose(ours, w.grad.numpy(), rtol=4 * np.finfo(dtype).eps, atol=0)


def test_the_penalty_keeps_the_parameters_dtype():
    p32 = {k: v.astype(np.float32) for k, v in COURSE.items()}
    assert l2_penalty(p32.values(), 1.0).dtype == np.float32


def test_a_single_weight_is_penalised_alone():
    # One Linear layer: ½ · 0.2 · (1² + 2² + 3²) = 1.4
    assert float(l2_penalty([np.array([[1.0], [2.0], [3.0]])], 0.2, "half")) == pytest.approx(1.4, rel=1e-15)
