"""One optimiser step from a given state, through check and validate: against torch.optim and the same
update written out in JAX, in both dtypes.

Expected values come from torch.optim (``SGD`` with and without momentum, ``RMSprop``, ``Adam``), from
JAX, or from arithmetic shown beside them.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from manual_backprop import Network, check, make_case, parse_case, validate
from manual_backprop.description.optimizer import OptimizerStep
from manual_backprop.errors import InputError
from manual_backprop.kernels import OPTIMIZERS

pytest.importorskip("torch")


def _case(rule: str, dtype: str, seed: int, t: int = 3):
    rng = np.random.default_rng(seed)
    sizes = tuple(int(n) for n in rng.integers(2, 6, size=3))
    net = Network(sizes, ("tanh", "sigmoid"), "bce", dtype=dtype)
    opt = OPTIMIZERS[rule]
    state = {f"{s}{p}": np.abs(rng.standard_normal(shape)).astype(dtype) * (0.1 if s == "v" else 1.0)
             for s in opt.state for p, shape in net.parameter_shapes().items()}
    step = OptimizerStep(rule, 0.05, dict(opt.constants), t if opt.counts_steps else 0, state)
    return make_case(net, seed=seed, batch=5, optimizer=step)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("rule", sorted(OPTIMIZERS))
@pytest.mark.parametrize("seed", range(2))
def test_one_step_from_a_given_state_agrees_with_torch_optim_and_jax(rule, dtype, seed):
    case = _case(rule, dtype, seed)
    report = check(case, against=["torch", "jax"])
    assert report.ok, report.message()
    expected = [f"{p}_next" for p in case.network.parameter_shapes()]
    expected += [f"{s}{p}_next" for s in OPTIMIZERS[rule].state for p in case.network.parameter_shapes()]
    # (adam keeps m and v: vW1_next ... come after mW1_next ..., in the registry's order of its state)
    assert report.extra == expected
    assert all(c.status == "ok" for n in expected for c in report.checks[n].values())


def test_adam_with_the_counter_not_incremented_is_caught(monkeypatch):
    # Planted: the bias correction with t instead of t + 1 (t = 3 given, so it is 1 - b**3, not 1 - b**4).
    from manual_backprop.kernels import optimizers

    right = optimizers.adam_update
    monkeypatch.setitem(OPTIMIZERS, "adam", dataclasses.replace(
        OPTIMIZERS["adam"], update=lambda W, g, s, lr, t=0, **c: right(W, g, s, lr, t=t - 1, **c)))
    report = check(_case("adam", "float64", 0), against=["torch", "jax"])
    assert not report.ok
    assert report.checks["W1_next"]["torch"].status == "fail" and report.checks["W1_next"]["jax"].status == "fail"
    assert report.checks["mW1_next"]["torch"].status == "ok"  # the moments do not read t


ADAM_FILE = """
[network]
sizes = [2, 1]
activations = ["identity"]
loss = "half_mse"
reduction = "sum"
[parameters]
W1 = [[1.0], [-1.0]]
b1 = [0.0]
[data]
X = [[1.0, 2.0]]
Y = [[0.0]]
[optimizer]
name = "adam"
learning_rate = 0.1
"""


def test_a_first_adam_step_from_zeros_moves_each_parameter_by_the_learning_rate():
    # Z = 1 - 2 = -1, L = ½ Z², dZ = -1: dW1 = X.T dZ = [[-1], [-2]], db1 = [-1]. From zero moments and t = 0
    # the bias-corrected step is lr g / (|g| + eps): each entry moves by 0.1 against its gradient's sign
    # (to 1e-8 relative): W1_next = [[1.1], [-0.9]], b1_next = [0.1]; mW1_next = 0.1 g, vW1_next = 0.001 g².
    case = parse_case(ADAM_FILE, "adam.toml")
    claims = """
[claimed]
W1_next = [[1.1], [-0.9]]
b1_next = [0.1]
mW1_next = [[-0.1], [-0.2]]
vW1_next = [[0.001], [0.004]]
"""
    report = validate(parse_case(ADAM_FILE + claims, "adam.toml"))
    assert report.ok, [(n, c.ok) for n, c in report.claims.items()]
    assert check(case, against=["torch", "jax"]).ok


def test_the_courses_velocity_form_is_judged_by_torch_through_its_buffer():
    # v = -lr·b maps the course's velocity onto torch's buffer: torch.optim judges it (above, every rule);
    # here by arithmetic: v0 = 0, so v' = -lr·g and W' = W + v' = W - lr·g, the plain step.
    text = ADAM_FILE.replace('name = "adam"', 'name = "momentum"\nform = "velocity"\nmomentum = 0.9')
    claims = "\n[claimed]\nW1_next = [[1.1], [-0.8]]\nvW1_next = [[0.1], [0.2]]\n"
    assert validate(parse_case(text + claims, "v.toml")).ok


def test_a_claimed_state_the_optimiser_does_not_keep_is_an_input_error():
    text = ADAM_FILE.replace('name = "adam"', 'name = "rmsprop"') + "\n[claimed]\nmW1_next = [[0.0], [0.0]]\n"
    with pytest.raises(InputError, match=r"mW1_next is not made by this step: rmsprop keeps v"):
        validate(parse_case(text, "r.toml"))


def test_a_step_beyond_the_dtype_is_an_input_error_not_a_failure():
    # Momentum from v = 0: v' = g, W' = W - lr·g. With W1 = [[1e300], [-1]] and X = [[1e-300, 2]], Z = 1 - 2 = -1,
    # dW1 = X.T dZ = [[-1e-300], [-2]], every value finite; lr = 1e308 makes W1_next[1] = -1 + 2e308: Inf.
    text = ADAM_FILE.replace('name = "adam"', 'name = "momentum"').replace("learning_rate = 0.1",
                                                                          "learning_rate = 1e308")
    text = text.replace("W1 = [[1.0], [-1.0]]", "W1 = [[1e300], [-1.0]]").replace("X = [[1.0, 2.0]]",
                                                                                 "X = [[1e-300, 2.0]]")
    with pytest.raises(InputError, match=r"the values overflow float64: W1_next would be Inf"):
        check(parse_case(text, "big.toml"), against=["torch"])


def _k_steps(rule: str, dtype: str, k: int = 5):
    case = _case(rule, dtype, 3, t=0)
    return dataclasses.replace(case, optimizer=dataclasses.replace(case.optimizer, steps=k))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("rule", sorted(OPTIMIZERS))
def test_k_steps_agree_with_the_frameworks_after_every_step(rule, dtype):
    report = check(_k_steps(rule, dtype), against=["torch", "jax"])
    assert report.ok, report.message()
    assert any("5 " + rule + " steps" in n and "after every step" in n for n in report.notices), report.notices


def test_five_steps_end_where_torch_optim_running_on_its_own_ends():
    # torch.optim.Adam, five steps of its own from zero moments on the same batch, each with a fresh
    # .grad from the same loss written in torch: the engine's trajectory must end at the same parameters.
    import torch

    from manual_backprop.engine.sgd import trajectory
    from manual_backprop.references import torch_ref

    case = _k_steps("adam", "float64")
    case = dataclasses.replace(case, optimizer=dataclasses.replace(case.optimizer, state={}))
    params = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in case.params.items()}
    opt = torch.optim.Adam(list(params.values()), lr=0.05)
    X, Y = torch.tensor(case.X), torch.tensor(case.Y)
    for _ in range(5):
        opt.zero_grad()
        torch_ref.loss(case.network, params, X, Y).backward()
        opt.step()
    ours = trajectory(case)[-1][2]
    for k, p in params.items():
        np.testing.assert_allclose(ours[f"{k}_next"], p.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_the_first_step_that_disagrees_is_named(monkeypatch):
    # Planted: Adam's counter not incremented from the second step on (t = 0 is right by accident).
    from manual_backprop.kernels import optimizers

    right = optimizers.adam_update
    monkeypatch.setitem(OPTIMIZERS, "adam", dataclasses.replace(
        OPTIMIZERS["adam"], update=lambda W, g, s, lr, t=0, **c: right(W, g, s, lr, t=max(t - 1, 0), **c)))
    report = check(_k_steps("adam", "float64"), against=["torch"])
    assert not report.ok
    assert any("the first that disagrees is step 2 of 5, at W1_next" in n for n in report.notices), report.notices


def _torch_k_steps(case, k: int, zero_grad: bool):
    """torch.optim on its own for k steps from the case's start (zero state), with or without zero_grad."""
    import torch

    from manual_backprop.references import torch_ref

    params = {n: torch.tensor(v.copy(), requires_grad=True) for n, v in case.params.items()}
    opt = torch.optim.Adam(list(params.values()), lr=case.optimizer.learning_rate)
    X, Y = torch.tensor(case.X), torch.tensor(case.Y)
    for j in range(k):
        if zero_grad or j == 0:
            opt.zero_grad()
        torch_ref.loss(case.network, params, X, Y).backward()
        opt.step()
    out = {f"{n}_next": p.detach().numpy().copy() for n, p in params.items()}
    for n, p in params.items():
        out[f"m{n}_next"] = opt.state[p]["exp_avg"].numpy().copy()
        out[f"v{n}_next"] = opt.state[p]["exp_avg_sq"].numpy().copy()
    return out


@pytest.mark.parametrize("zero_grad", [True, False])
def test_validate_follows_k_steps_and_names_gradients_left_to_accumulate(zero_grad):
    # The claims are torch.optim.Adam's own after 4 steps, each with a fresh backward through the same loss:
    # with zero_grad every claim is right; without it .grad adds up and only that mistake gives the numbers.
    from tests.student import claims_of

    case = _k_steps("adam", "float64", k=4)
    case = dataclasses.replace(case, optimizer=dataclasses.replace(case.optimizer, state={}))
    torch_says = _torch_k_steps(case, 4, zero_grad)
    report = validate(dataclasses.replace(case, claimed=claims_of(torch_says, decimals=10)))
    if zero_grad:
        assert report.ok, report.summary()
        return
    names = [n for n in case.params]
    assert not report.ok
    # step 1 is the same either way (.grad starts at zero), so b1 and W1 move as they should only if
    # later gradients vanish; every claim here is off, and each is the accumulated mistake alone
    wrong = [n for n, c in report.claims.items() if not c.ok]
    assert {f"{n}_next" for n in names} <= set(wrong)
    for n in wrong:
        assert report.claims[n].error == "own"
        assert [f.mistake.id for f in report.claims[n].fits] == ["gradients_accumulated_across_steps"], n
    assert "optimizer.zero_grad()" in report.claims[f"{names[0]}_next"].diagnosis


def test_after_k_steps_a_wrong_first_gradient_is_carried_into_every_parameter():
    # The student's dW2 is twice the right one at step 1; the k steps after it, done right from there,
    # end where the claims are: carried from dW2, not the step's own error.
    from manual_backprop.engine.sgd import trajectory
    from tests.student import claims_of, derive

    case = _k_steps("momentum", "float64", k=3)
    t = derive(dataclasses.replace(case, optimizer=None))
    first = {f"d{n}": t[f"d{n}"] * (2 if n == "W2" else 1) for n in case.params}
    ends = trajectory(case, first=first)[-1][2]  # the engine's steps are checked against torch.optim above
    claims = claims_of({"dW2": first["dW2"], "W1_next": ends["W1_next"], "W2_next": ends["W2_next"]})
    report = validate(dataclasses.replace(case, claimed=claims))
    assert report.own_errors == ["dW2"]
    assert report.claims["W2_next"].error == "carried" and report.claims["W2_next"].carried_from == ["dW2"]
    assert report.claims["W1_next"].error == "carried"


def test_the_shipped_three_step_example_is_torch_without_zero_grad_and_is_named_so():
    from pathlib import Path

    from manual_backprop import load_case

    case = load_case(Path(__file__).resolve().parent.parent / "examples" / "adam_three_steps.toml")
    torch_says = _torch_k_steps(dataclasses.replace(case, claimed={}), 3, zero_grad=False)
    for name, claim in case.claimed.items():
        if name.endswith("_next"):  # the file's numbers are torch's, printed to 6 decimals
            np.testing.assert_allclose(claim.value, torch_says[name], atol=5e-7, rtol=0)
    report = validate(case)
    assert report.own_errors == ["W1_next", "b1_next", "W2_next", "b2_next"] and report.claims["dW2"].ok
    assert all([f.mistake.id for f in report.claims[n].fits] == ["gradients_accumulated_across_steps"]
               for n in report.own_errors)
