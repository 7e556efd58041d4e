"""The optimiser kernels against torch.optim, step by step, and against arithmetic.

torch.optim is the reference: the same parameter, the same sequence of gradients (set as ``.grad``
before each ``opt.step()``), five steps, the parameter and the state compared after every step.
torch rounds some updates in another order (Adam's ``lerp``, its step size ``lr / (1 - b1**t)``),
so the agreement asked for is a few units of rounding of the magnitudes involved, not bits.
"""

from __future__ import annotations

import numpy as np
import pytest

from manual_backprop.compare import UNIT_ROUNDOFF
from manual_backprop.kernels.optimizers import OPTIMIZERS, adam_update

torch = pytest.importorskip("torch")

STEPS = 5
LR = 0.05

# name -> (torch optimiser factory, {our state name: torch's state key})
TORCH = {
    "sgd": (lambda p: torch.optim.SGD([p], lr=LR), {}),
    "momentum": (lambda p: torch.optim.SGD([p], lr=LR, momentum=0.9), {"v": "momentum_buffer"}),
    "rmsprop": (lambda p: torch.optim.RMSprop([p], lr=LR, alpha=0.99, eps=1e-8), {"v": "square_avg"}),
    "adam": (lambda p: torch.optim.Adam([p], lr=LR, betas=(0.9, 0.999), eps=1e-8),
             {"m": "exp_avg", "v": "exp_avg_sq"}),
}


def _gradients(dtype, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((4, 3)).astype(dtype)
    return W, [rng.standard_normal((4, 3)).astype(dtype) for _ in range(STEPS)]


def _close(ours, theirs, scale, dtype, what):
    # 32 units of rounding of the magnitudes the step combines
    allowed = 32 * UNIT_ROUNDOFF[np.dtype(dtype).name] * scale
    assert np.all(np.abs(ours - theirs) <= allowed), (what, np.max(np.abs(ours - theirs)), allowed)


def test_the_velocity_form_of_momentum_is_the_buffer_form_scaled_by_minus_lr():
    # v_velocity = -lr v_buffer at every step, and the same W (arithmetic: substitute v = -lr b into
    # v' = mu v - lr g  ->  -lr b' = -lr (mu b + g)).
    W0, grads = _gradients("float64")
    Wb, sb, Wv, sv = W0.copy(), {}, W0.copy(), {}
    for g in grads:
        Wb, sb = OPTIMIZERS["momentum"].update(Wb, g, sb, LR, momentum=0.9)
        Wv, sv = OPTIMIZERS["momentum_velocity"].update(Wv, g, sv, LR, momentum=0.9)
        np.testing.assert_allclose(sv["v"], -LR * sb["v"], rtol=1e-14, atol=1e-16)
        np.testing.assert_allclose(Wv, Wb, rtol=1e-14, atol=1e-16)


def test_adams_first_step_counts_itself_before_the_bias_correction():
    # From zero moments with t = 0: m' = 0.1 g, v' = 0.001 g**2; t' = 1 divides them by 0.1 and 0.001,
    # so the step is lr g / (|g| + eps): every entry moves by lr (to 1e-8 relative), against its gradient.
    W = np.zeros((2, 2))
    g = np.array([[2.0, -3.0], [0.5, -0.25]])
    W1, state = adam_update(W, g, {}, lr=0.1, t=0)
    np.testing.assert_allclose(W1, -0.1 * g / (np.abs(g) + 1e-8), rtol=1e-12)
    np.testing.assert_allclose(state["m"], 0.1 * g, rtol=1e-15)
    np.testing.assert_allclose(state["v"], 0.001 * g * g, rtol=1e-12)
    # Without the increment (t' = 0) the corrections would divide by 0: t is the steps already taken.
    W2, _ = adam_update(W1, g, state, lr=0.1, t=1)  # the second step: corrections 1 - 0.9**2, 1 - 0.999**2
    m2, v2 = 0.9 * 0.1 * g + 0.1 * g, 0.999 * 0.001 * g * g + 0.001 * g * g
    np.testing.assert_allclose(W2, W1 - 0.1 * (m2 / 0.19) / (np.sqrt(v2 / (1 - 0.999**2)) + 1e-8), rtol=1e-12)


def test_no_update_writes_into_its_inputs():
    W0, grads = _gradients("float64")
    for name, opt in OPTIMIZERS.items():
        W, g = W0.copy(), grads[0].copy()
        state = {s: np.ones_like(W) for s in opt.state}
        before = {s: v.copy() for s, v in state.items()}
        opt.update(W, g, state, LR, **opt.constants)
        assert np.array_equal(W, W0) and np.array_equal(g, grads[0]), name
        assert all(np.array_equal(state[s], before[s]) for s in state), name


# last: torch.optim's own steps (the arithmetic tests above kill most wrong rules first, and fast)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(TORCH))
def test_five_steps_agree_with_torch_optim_after_every_step(name, dtype):
    W0, grads = _gradients(dtype)
    p = torch.tensor(W0.copy(), requires_grad=True)
    make, state_keys = TORCH[name]
    opt = make(p)
    opt_ours = OPTIMIZERS[name]
    W, state = W0.copy(), {}
    for t, g in enumerate(grads):
        p.grad = torch.tensor(g)
        opt.step()
        W_prev, state_prev = W, state
        W, state = opt_ours.update(W, g, state, LR, t=t, **opt_ours.constants)
        assert W.dtype == np.dtype(dtype) and all(s.dtype == np.dtype(dtype) for s in state.values())
        # the magnitudes a step adds up: the parameter and the update; a state's previous value and g, g**2
        _close(W, p.detach().numpy(), np.abs(W_prev) + np.abs(W - W_prev), dtype, f"{name} W after step {t + 1}")
        for ours_name, key in state_keys.items():
            previous = np.abs(state_prev.get(ours_name, 0.0))
            _close(state[ours_name], opt.state[p][key].numpy(), previous + np.abs(g) + g * g, dtype,
                   f"{name} {ours_name} after step {t + 1}")
