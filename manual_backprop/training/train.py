"""Training with the hand-derived gradients only: seed 004's demo.

Each step is the fast engine's forward and hand-derived backward
(:func:`manual_backprop.engine.fast.value_and_grad`, the same kernels as the
checking engine, on buffers reused step after step) and one plain descent
step (:mod:`manual_backprop.engine.sgd`)::

    L, grads = value_and_grad(network, params, X_batch, T_batch, workspace)
    params = {W: W - lr * dW, b: b - lr * db}

No autodiff is involved. With ``check_every=K`` the gradient of every K-th
step (step 0 included, on the parameters and batch of that step) is also
computed by a reference (PyTorch or JAX autodiff), and training stops at the
first step where a ``dWl`` or ``dbl`` disagrees: judged as ``manual-backprop
check`` judges, by the one comparator and tolerance policy
(:func:`compare_gradients`).

The data: two classes in the plane split by a circle (seed 004's picture).
Class 1 fills the unit disc, class 0 the ring between radii 1.5 and 2.2,
and every point is then moved by Gaussian noise (``noise``, 0.1 by
default), so the classes nearly touch around the circle of radius 1.25. In
``n0`` input dimensions the disc and ring are a ball and a shell. Points
come in random order from ``seed``; the last ``held_out`` fraction is never
trained on.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from ..compare import TensorCheck, compare_arrays, error_scales, kink_scales, possible_flips, step_error_scales
from ..description.case import Case, check_memory, make_case, random_parameters
from ..description.network import Network
from ..description.optimizer import OptimizerStep
from ..engine import fast
from ..engine.sgd import check_learning_rate
from ..engine.trace import backward, forward, run
from ..errors import InputError
from ..kernels import ACTIVATIONS, LOSSES, NORMS, OPTIMIZERS, linear_forward
from ..kernels.normalization import norm_apply
from ..kernels.losses import one_hot

INNER_RADIUS = 1.0            # class 1: the unit disc (ball)
OUTER_RADII = (1.5, 2.2)      # class 0: the ring (shell) between these radii
BOUNDARY_RADIUS = 1.25        # the circle halfway between them, drawn in the picture

SAMPLES = 600
HELD_OUT = 0.25
NOISE = 0.1
LEARNING_RATE = 0.5
EPOCHS = 1000


@dataclass(frozen=True)
class Dataset:
    """Training and held-out points, with targets shaped for the network's loss, and their class labels."""

    X_train: np.ndarray
    Y_train: np.ndarray
    labels_train: np.ndarray
    X_held: np.ndarray
    Y_held: np.ndarray
    labels_held: np.ndarray
    noise: float
    seed: int

    @property
    def T_train(self) -> np.ndarray:
        return _as_matrix(self.Y_train, self.X_train.dtype)

    @property
    def T_held(self) -> np.ndarray:
        return _as_matrix(self.Y_held, self.X_held.dtype)


def _as_matrix(Y: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return one_hot(Y, 2, dtype) if Y.ndim == 1 else Y


def circle_data(network: Network, samples: int = SAMPLES, held_out: float = HELD_OUT,
                noise: float = NOISE, seed: int = 0) -> Dataset:
    """Two noisy classes split by a circle, as targets ``network``'s loss accepts.

    One output unit: targets 1.0 (inside) and 0.0 (outside), a point is
    predicted inside when A_L > 0.5. Two output units: integer labels for
    softmax_cross_entropy, one-hot rows otherwise, predicted by argmax.
    """
    K, d = network.sizes[-1], network.sizes[0]
    if K not in (1, 2):
        raise InputError(
            f"train's data has two classes: the network needs 1 output (a probability) or 2 "
            f"(one per class), got {K}")
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 4:
        raise InputError(f"--samples must be an integer >= 4, got {samples!r}")
    if not 0 < held_out < 1:
        raise InputError(f"--held-out must be a fraction strictly between 0 and 1, got {held_out!r}")
    n_held = int(round(samples * held_out))
    if n_held < 1 or n_held > samples - 1:
        raise InputError(f"--held-out {held_out} of {samples} samples leaves no training or no held-out points")
    if not np.isfinite(noise) or noise < 0:
        raise InputError(f"--noise must be a non-negative number, got {noise!r}")
    check_memory(network, samples, "train", rows="--samples")  # every point is scored at once

    rng = np.random.default_rng([seed, 2])
    labels = rng.permutation(np.arange(samples) % 2)          # half inside (1), half outside (0)
    direction = rng.standard_normal((samples, d))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    u = rng.uniform(0, 1, samples)
    a, b = OUTER_RADII
    # uniform in the ball / in the shell: the radius's d-th power is uniform
    r = np.where(labels == 1, INNER_RADIUS * u ** (1 / d), (a**d + u * (b**d - a**d)) ** (1 / d))
    X = (r[:, None] * direction + noise * rng.standard_normal((samples, d))).astype(network.np_dtype)
    if K == 1:
        Y = labels[:, None].astype(network.np_dtype)
    elif network.loss == "softmax_cross_entropy":
        Y = labels.astype(np.int64)
    else:
        Y = one_hot(labels, 2, network.np_dtype)
    n = samples - n_held
    return Dataset(X[:n], Y[:n], labels[:n], X[n:], Y[n:], labels[n:], float(noise), int(seed))


def initial_parameters(network: Network, seed: int) -> dict[str, np.ndarray]:
    """The engine's random parameters for ``seed``, with the biases of kinked layers made positive.

    A unit of an activation with a kink (``ACTIVATIONS[act].kink`` not None,
    e.g. ReLU at 0) whose pre-activation is on the flat side on every point
    gets no gradient and never recovers; with only two units in seed 004's
    second layer, one dead unit at the start often costs the run. Starting
    every such bias above zero (|b|, between 0.05 and 0.5) keeps them alive.
    """
    params = random_parameters(network, seed)
    for l, act in enumerate(network.activations, start=1):
        if ACTIVATIONS[act].kink is not None:
            params[f"b{l}"] = np.abs(params[f"b{l}"])
    return params


def outputs(network: Network, params: Mapping[str, np.ndarray], X: np.ndarray,
            population: np.ndarray | None = None) -> np.ndarray:
    """A_L for inputs X (no targets needed): the forward without the loss."""
    return _outputs(network, params, X, population)[1]


def _outputs(network: Network, params: Mapping[str, np.ndarray], X: np.ndarray,
             population: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(Z_L, A_L)`` for inputs X. A layer norm normalises each row by itself; a batch norm uses the
    statistics of ``population`` (the training set, the batch full-batch training normalised: inference
    mode), so that a point's output does not depend on the points queried with it."""
    A, P = X, population
    for l, act in enumerate(network.activations, start=1):
        Z = S = linear_forward(A, params[f"W{l}"], params[f"b{l}"])
        if network.normed(l):
            norm, gamma, beta = NORMS[network.norm(l)], params[f"gamma{l}"], params[f"beta{l}"]
            if norm.name == "batchnorm":
                if P is None:
                    raise InputError("a batch-norm network's outputs need the training set's statistics")
                ZP = linear_forward(P, params[f"W{l}"], params[f"b{l}"])
                _, SP, inv_std = norm.forward(ZP, gamma, beta, network.eps)
                S = norm_apply(Z, ZP.mean(axis=0), inv_std, gamma, beta)
                P = ACTIVATIONS[act].forward(SP)
            else:
                S = norm.forward(Z, gamma, beta, network.eps)[1]
                P = None if P is None else ACTIVATIONS[act].forward(norm.forward(
                    linear_forward(P, params[f"W{l}"], params[f"b{l}"]), gamma, beta, network.eps)[1])
        elif P is not None:
            P = ACTIVATIONS[act].forward(linear_forward(P, params[f"W{l}"], params[f"b{l}"]))
        A = ACTIVATIONS[act].forward(S)
    return Z, A


def predicted_class(A: np.ndarray) -> np.ndarray:
    """1 (inside) or 0 per row: A_L > 0.5 for one output, the argmax for two."""
    return (A[:, 0] > 0.5).astype(np.int64) if A.shape[1] == 1 else A.argmax(axis=1)


def probability_inside(A: np.ndarray) -> np.ndarray:
    """What the network says about class 1, per row: A_L itself, or its second column."""
    return A[:, 0] if A.shape[1] == 1 else A[:, 1]


def evaluate(network: Network, params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray,
             labels: np.ndarray, population: np.ndarray | None = None) -> tuple[float, float]:
    """``(loss, accuracy)`` on a set of points (a batch norm with the statistics of ``population``)."""
    T = _as_matrix(Y, X.dtype)
    if network.has_norm:
        Z, A = _outputs(network, params, X, population)
        L = LOSSES[network.loss].value(Z, A, T, network.reduction)
        return float(L), float((predicted_class(A) == labels).mean())
    fwd = forward(network, params, X, Y, T)
    return float(fwd["L"]), float((predicted_class(fwd[f"A{network.depth}"]) == labels).mean())


def judged_trace(case: Case) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The checking engine's trace of ``case`` and its rounding scales ``E``: what a re-check judges by."""
    with np.errstate(all="ignore"):  # an overflow would show as a non-finite gradient, never as a warning
        trace = run(case)
        return trace, error_scales(case.network, case.params, trace, case.T)


def compare_gradients(case: Case, ours: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray],
                      against: str, step: int, judged: tuple[dict, dict] | None = None) -> TensorCheck | None:
    """The first ``dWl``/``dbl`` (backward order) that disagrees with the reference, or None.

    ``ours`` are the fast engine's gradients for ``case`` (the step's parameters
    and batch), ``ref`` the reference's. Judged by the comparator with the
    tolerance policy: ``E`` is :func:`~manual_backprop.compare.error_scales` of
    the checking engine's trace of the same case, each element must satisfy
    ``|ours - ref| <= K * E + floor``, and a ReLU unit within rounding of its
    kink may take the other side in the reference
    (:func:`~manual_backprop.compare.possible_flips`). The failing check
    carries ``extra["step"]``. ``judged`` is :func:`judged_trace` of ``case`` if already at hand.
    """
    network = case.network
    trace, E = judged or judged_trace(case)
    with np.errstate(all="ignore"):
        flips = possible_flips(network, trace, E)
        kinks = kink_scales(network, case.params, trace, flips) if flips else {}
    names = [n for n in network.backward_names() if n.startswith(("dW", "db", "dgamma"))]
    return _first_disagreement(case, {n: ours[n] for n in names}, ref, E, against, step, kinks)


def compare_step(case: Case, ours: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray], against: str,
                 step: int, judged: tuple[dict, dict] | None = None) -> TensorCheck | None:
    """The first parameter or state after the optimiser step (``W1_next, ..., vW1_next, ...``) that disagrees
    with the reference's step (torch.optim, or the update written out in JAX) from the same parameters, state
    and batch; None when all agree. Judged with the rounding scales carried through the update
    (:func:`~manual_backprop.compare.step_error_scales`); ``judged`` as for :func:`compare_gradients`."""
    trace, E = judged or judged_trace(case)
    with np.errstate(all="ignore"):
        scales = step_error_scales(case.network, case.params, trace, E, case.step)
    return _first_disagreement(case, ours, ref, scales, against, step)


def _first_disagreement(case: Case, ours: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray],
                        scales: Mapping[str, np.ndarray], against: str, step: int,
                        kinks: Mapping[str, np.ndarray] | None = None) -> TensorCheck | None:
    """The first of ``ours`` (in its order) the comparator fails against ``ref``, with ``extra["step"]``."""
    for name, value in ours.items():
        check = compare_arrays(name, against, value, ref.get(name), scales[name], case.network.dtype,
                               (kinks or {}).get(name))
        if not check.ok:
            check.extra["step"] = step
            return check
    return None


def mismatch_json(check: TensorCheck) -> dict:
    """The ``check.mismatch`` object of ``train --json``: step, tensor, index, both values, reference, tolerance.

    ``tolerance`` is the largest difference allowed at that element (``K * E + floor``).
    """
    w = check.worst
    return {"step": check.extra.get("step"), "tensor": check.name, "index": list(w.index) if w else None,
            "ours": w.engine if w else None, "reference": w.reference if w else None,
            "against": check.reference, "tolerance": w.tolerance if w else None}


def mismatch_message(check: TensorCheck) -> str:
    """``step 0: dW2[0, 0] disagrees with torch: hand-derived ..., torch ..., |Δ| ... (up to ... allowed)``."""
    return check.message(ours="hand-derived", where=f"step {check.extra.get('step')}")


DIVERGENCE_GROWTH = 1e6  # a batch loss above this many times max(starting loss, 1) has diverged


@dataclass(frozen=True)
class Divergence:
    """Where and how a run diverged: ``step`` (counted from 0) did not complete.

    ``what`` is ``"the loss is inf"`` (or ``nan``), ``"the loss is 2.9e+81,
    over 1e+06 times its start 0.7235"`` or ``"parameter W1 is not finite"``.
    The loss is the step's batch loss, or the whole training set's at the
    evaluation just before the step, whichever shows it first.
    """

    step: int
    what: str

    @property
    def message(self) -> str:
        return f"diverged at step {self.step}: {self.what}; lower --lr"

    def to_json(self) -> dict:
        return {"step": self.step, "what": self.what}


def _loss_problem(L: float, start: float) -> str | None:
    """Why loss ``L`` shows divergence from a run that started at loss ``start``, or None."""
    if not np.isfinite(L):
        return f"the loss is {float(L)}"
    if L > DIVERGENCE_GROWTH * max(start, 1.0):
        return f"the loss is {L:.3g}, over {DIVERGENCE_GROWTH:g} times its start {start:.4g}"
    return None


def _nonfinite_parameter(network: Network, params: Mapping[str, np.ndarray]) -> str | None:
    """The first parameter (W1, b1, W2, ...) holding a NaN or an Inf, or None."""
    for name in network.parameter_shapes():
        if not np.isfinite(params[name]).all():
            return name
    return None


@dataclass
class History:
    """The batch loss of every step, and loss and accuracy on both sets every ``eval_every`` steps."""

    loss: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    held_out_loss: list[float] = field(default_factory=list)
    held_out_accuracy: list[float] = field(default_factory=list)


@dataclass
class TrainResult:
    network: Network
    params: dict[str, np.ndarray]
    data: Dataset
    history: History
    steps: int
    batch_size: int
    batches_per_epoch: int
    learning_rate: float
    seconds: float
    checks: int = 0
    against: str | None = None
    mismatch: TensorCheck | None = None  # the failed re-check, with extra["step"]
    diverged: Divergence | None = None   # the first non-finite (or exploded) loss or parameter
    optimizer: str = "sgd"               # the registry's key of the update (its constants: torch's)

    @property
    def ok(self) -> bool:
        return self.mismatch is None and self.diverged is None

    @property
    def epochs(self) -> float:
        return self.steps / self.batches_per_epoch

    @property
    def final_loss(self) -> float:
        return self.history.train_loss[-1]

    @property
    def train_accuracy(self) -> float:
        return self.history.train_accuracy[-1]

    @property
    def held_out_loss(self) -> float:
        return self.history.held_out_loss[-1]

    @property
    def held_out_accuracy(self) -> float:
        return self.history.held_out_accuracy[-1]


Progress = Callable[[int, int, float, float], None]  # (steps done, total, batch loss, held-out accuracy)


def steps_for(epochs: int, n_train: int, batch_size: int) -> int:
    """Descent steps in ``epochs`` passes over ``n_train`` points (a short last batch is a step too)."""
    return epochs * -(-n_train // batch_size)


def train(network: Network, params: Mapping[str, np.ndarray], data: Dataset, *, learning_rate: float,
          steps: int, batch_size: int | None = None, seed: int = 0, check_every: int | None = None,
          against: str = "torch", progress: Progress | None = None, optimizer: str = "sgd") -> TrainResult:
    """Descend ``steps`` times on ``data`` with the hand-derived gradients; stop at a failed re-check or divergence.

    ``batch_size`` None is full-batch gradient descent; otherwise each epoch
    visits the training points in a new random order (from ``seed``) in
    batches of ``batch_size``.

    The run diverges (``result.diverged``, a :class:`Divergence`) at the first
    step whose batch loss is not finite or above ``DIVERGENCE_GROWTH`` times
    max(starting loss, 1) or whose update makes a parameter non-finite; the
    training set's loss, evaluated every few steps, is judged as the batch
    loss of the next step. The arithmetic runs under
    ``np.errstate(all="ignore")``: an overflow is found by these tests, never
    printed as a RuntimeWarning. The result's parameters are those the failed
    step started from, and ``steps`` the steps completed.

    ``optimizer`` is a key of :data:`~manual_backprop.kernels.OPTIMIZERS` (sgd, momentum,
    momentum_velocity, rmsprop, adam, with torch's constants), its state carried from step to
    step from zeros; with ``check_every`` each re-check also takes the reference's step (torch.optim,
    or JAX) from the same parameters and state and compares every parameter and state after it.
    """
    if optimizer not in OPTIMIZERS:
        raise InputError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    rule = OPTIMIZERS[optimizer]
    lr = check_learning_rate(learning_rate, "--lr")
    n = data.X_train.shape[0]
    B = n if batch_size is None else batch_size
    if isinstance(B, bool) or not isinstance(B, (int, np.integer)) or not 1 <= B <= n:
        raise InputError(f"--batch-size must be an integer between 1 and the {n} training points, got {B!r}")
    if network.has_batchnorm and (B == 1 or n % B == 1):
        raise InputError(f"--batch-size {B} leaves a batch of one sample out of {n}, and batch norm's variance over "
                         f"one sample is 0 (no gradient reaches the layer); choose a batch size that leaves none")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise InputError(f"the number of steps must be a positive integer, got {steps!r}")
    if check_every is not None and (isinstance(check_every, bool) or not isinstance(check_every, int)
                                    or check_every < 1):
        raise InputError(f"--check-every must be a positive integer, got {check_every!r}")
    reference = _reference(against) if check_every else None

    params = {k: np.array(v, dtype=network.np_dtype) for k, v in params.items()}
    state = {f"{s}{k}": np.zeros_like(v) for s in rule.state for k, v in params.items()}
    rng = np.random.default_rng([seed, 3])
    X, Y, T = data.X_train, data.Y_train, data.T_train
    history = History()
    eval_every = max(1, steps // 200)
    checks, mismatch, diverged = 0, None, None
    batches: list[np.ndarray] = []
    labels = Y.ndim == 1  # integer class labels: the fast engine takes them as they are
    workspaces: dict[int, fast.Workspace] = {}
    t0 = time.perf_counter()
    # An overflow shows as a non-finite loss or parameter, tested below, never as a RuntimeWarning.
    with np.errstate(all="ignore"):
        _record(history, network, params, data, 0)
        start = history.train_loss[0]
        if not np.isfinite(start):
            raise InputError(f"the starting parameters give a training loss of {start}: "
                             f"they are too large (or not finite) to train from")
        if progress is not None:
            progress(0, steps, start, history.held_out_accuracy[0])
        for step in range(steps):
            if B == n:
                rows: slice | np.ndarray = slice(None)
            else:
                if not batches:
                    batches = np.array_split(rng.permutation(n), range(B, n, B))[::-1]
                rows = batches.pop()
            X_batch, Y_batch = X[rows], Y[rows]
            N = X_batch.shape[0]
            if network.has_norm:  # the checking engine: the fast one has no norms
                L, g = _checking_value_and_grad(network, params, X_batch, Y_batch, T[rows])
            else:
                if N not in workspaces:  # one per batch size: the last batch of an epoch may be short
                    workspaces[N] = fast.Workspace(network, N)
                L, g = fast.value_and_grad(network, params, X_batch, Y_batch if labels else T[rows], workspaces[N])
            what = _loss_problem(float(L), start)
            if what is not None:  # stop before the step: the parameters are those that gave the loss
                diverged = Divergence(step, what)
                break
            grads = {f"d{name}": value for name, value in g.items()}
            history.loss.append(float(L))
            new, new_state = {}, {}
            for name, P in params.items():  # the optimiser's kernels, its state carried over (t = steps taken)
                new[name], st = rule.update(P, grads[f"d{name}"], {s: state[f"{s}{name}"] for s in rule.state},
                                            lr, t=step, **rule.constants)
                new_state.update({f"{s}{name}": v for s, v in st.items()})
            bad = _nonfinite_parameter(network, new)
            if bad is not None:  # judged before the re-check, which would call any Inf a disagreement
                diverged = Divergence(step, f"parameter {bad} is not finite")
                break
            if check_every and step % check_every == 0:
                checks += 1
                case = make_case(network, params, X[rows], Y[rows], seed=seed, source=f"train step {step}")
                judged = judged_trace(case)  # one trace and one set of scales for both comparisons
                mismatch = compare_gradients(case, grads, reference.run(case), against, step, judged)
                if mismatch is None and optimizer != "sgd":  # and the step itself, from the same state
                    case = dataclasses.replace(case, optimizer=OptimizerStep(optimizer, lr, dict(rule.constants),
                                                                             step, dict(state)))
                    ours = {f"{k}_next": v for k, v in new.items()}
                    ours.update({f"{k}_next": v for k, v in new_state.items()})
                    mismatch = compare_step(case, ours, reference.next_parameters(case), against, step, judged)
                if mismatch is not None:  # stop before the step: the parameters are those that failed
                    break
            params, state = new, new_state
            if (step + 1) % eval_every == 0 or step + 1 == steps:
                _record(history, network, params, data, step + 1)
                what = _loss_problem(history.train_loss[-1], start)
                if what is not None:  # the next step starts from parameters whose training-set loss diverged
                    diverged = Divergence(step + 1, what)
                    break
                if progress is not None:
                    progress(step + 1, steps, history.loss[-1], history.held_out_accuracy[-1])
        done = diverged.step if diverged is not None else steps if mismatch is None else step
        if diverged is not None and history.eval_steps[-1] != done:
            _record(history, network, params, data, done)  # the final metrics: those of the parameters returned
    seconds = time.perf_counter() - t0
    return TrainResult(network, params, data, history, done, B, -(-n // B), lr, seconds, checks,
                       against if check_every else None, mismatch, diverged, optimizer)


def _checking_value_and_grad(network: Network, params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray,
                             T: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
    """``(L, {W1: dW1, ..., gamma1: dgamma1, ...})`` from the checking engine's forward and backward."""
    fwd = forward(network, params, X, Y, T)
    bwd = backward(network, params, fwd, T)
    return fwd["L"], {name: bwd[f"d{name}"] for name in params}


def _record(history: History, network: Network, params: Mapping[str, np.ndarray], data: Dataset,
            step: int) -> None:
    history.eval_steps.append(step)
    for part, X, Y, labels in (("train", data.X_train, data.Y_train, data.labels_train),
                               ("held_out", data.X_held, data.Y_held, data.labels_held)):
        loss, acc = evaluate(network, params, X, Y, labels, data.X_train)
        getattr(history, f"{part}_loss").append(loss)
        getattr(history, f"{part}_accuracy").append(acc)


def _reference(against: str):
    """The reference module for the re-check (imported once, before training starts)."""
    if against not in ("torch", "jax"):
        raise InputError(f"--against must be torch or jax for the re-check, got {against!r}")
    from .. import references

    return references.load(against)
