"""The implementations a whole forward + backward is timed in, one builder each.

``build(impl, case, T) -> Prepared``: everything allocated and converted
before the clock starts; ``Prepared.call()`` is what is timed (one forward
and backward: the loss and every dWl, dbl), and ``Prepared.result()`` turns
what the last call left into NumPy ``(L, {"W1": ..., "b1": ...})`` for the
check against the engine, outside the timed region.

- ``numpy_fast``: :func:`manual_backprop.fast.value_and_grad` with a workspace;
- ``numpy_trace``: the checking engine (``forward`` + ``backward``, every named tensor kept);
- ``numpy_loop``: the same rules one sample at a time (vector-matrix products,
  ``np.outer`` for dW), accumulated; capped at ``LOOP_CAP`` samples, see ``loop_samples``;
- ``torch``: eager autograd, ``torch.autograd.grad`` of the torch reference's own
  ``loss`` (the same forward and loss table the checks use);
- ``jax``: ``jax.jit(jax.value_and_grad(jax_ref.loss))``, compiled by a first call before timing;
- ``floor_numpy``, ``floor_torch``: only the matrix products forward and backward
  need (``A @ W`` per layer, ``A.T @ dZ`` per layer, ``dZ @ W.T`` above the first),
  on preallocated arrays with ``out=``: what this machine's BLAS allows;
- ``user``: the user's own code (``manual-backprop bench --code``), :func:`build_user`.

:func:`check` judges what the last call left against the engine
(:mod:`~manual_backprop.bench.grid`), outside any timed region.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from .. import engine
from ..compare import TensorCheck
from ..description.case import Case
from ..description.convention import to_engine, to_user
from ..engine import fast
from ..kernels import ACTIVATIONS, LOSSES, linear, linear_forward
from .grid import check_against_engine, check_floor

IMPLS = ("numpy_fast", "numpy_trace", "numpy_loop", "floor_numpy", "torch", "floor_torch", "jax")
# Each library's implementations side by side in a round (the pause falls where the library changes).
LIBRARY = {"numpy_fast": "numpy", "numpy_trace": "numpy", "numpy_loop": "numpy", "floor_numpy": "numpy",
           "torch": "torch", "floor_torch": "torch", "jax": "jax", "user": "user"}
# The per-sample loop runs on at most this many samples per call (cost is linear in samples);
# keyed by the widest layer, so one call stays well under a second.
LOOP_CAP = {16: 4096, 512: 256, 2048: 32}


def loop_samples(case: Case, quick: bool = False) -> int:
    """How many of the batch's samples the per-sample loop runs on (the report scales by N / this).

    ``quick`` (a run that only checks, not times): at most 4.
    """
    widest = max(case.network.sizes)
    cap = next(c for w, c in sorted(LOOP_CAP.items()) if widest <= w)
    return min(case.batch, 4 if quick else cap)


@dataclass
class Prepared:
    """``call()`` is timed; it leaves its output in ``box`` (``box.clear()`` frees it)."""

    call: Callable[[], Any]
    result: Callable[[], tuple[Any, dict[str, np.ndarray]]]
    extra: dict[str, Any] = field(default_factory=dict)
    is_floor: bool = False
    box: dict[str, Any] = field(default_factory=dict)


def build(impl: str, case: Case, T: np.ndarray, quick: bool = False) -> Prepared:
    """``T`` is the target as the timed code gets it: labels (N,) for cross-entropy, else (N, K).

    ``quick``: the run only checks (``--benchmark-disable``); the loop takes fewer samples.
    """
    if impl == "numpy_loop":
        return _numpy_loop(case, T, loop_samples(case, quick))
    return _BUILDERS[impl](case, T)


def _numpy_fast(case: Case, T: np.ndarray) -> Prepared:
    net, params, X = case.network, case.params, case.X
    ws = fast.Workspace(net, case.batch)
    box = {}

    def call():
        box["out"] = fast.value_and_grad(net, params, X, T, ws)

    return Prepared(call, lambda: box["out"], box=box)


def _numpy_trace(case: Case, T: np.ndarray) -> Prepared:
    net, params, X, Y, Tm = case.network, case.params, case.X, case.Y, case.T
    box = {}

    def call():
        fwd = engine.forward(net, params, X, Y, Tm)
        box["out"] = fwd, engine.backward(net, params, fwd, Tm)

    def result():
        fwd, bwd = box["out"]
        return fwd["L"], {name: bwd[f"d{name}"] for name in params}

    return Prepared(call, result, box=box)


def _numpy_loop(case: Case, T: np.ndarray, m: int) -> Prepared:
    """One sample at a time: ``z = a @ W + b`` (vector-matrix), ``dW += outer(a, dz)``, ``db += dz``."""
    net, params = case.network, case.params
    X, Tm = case.X[:m], case.T[:m]
    loss = LOSSES[net.loss]
    acts = [ACTIVATIONS[a] for a in net.activations]
    Ws = [params[f"W{l}"] for l in range(1, net.depth + 1)]
    bs = [params[f"b{l}"] for l in range(1, net.depth + 1)]
    c = net.np_dtype.type(loss.scale(m, net.sizes[-1], net.reduction))
    box = {}

    def call():
        dWs = [np.zeros_like(W) for W in Ws]
        dbs = [np.zeros_like(b) for b in bs]
        total = net.np_dtype.type(0)
        for i in range(m):
            x, t = X[i:i + 1], Tm[i:i + 1]
            Zs, As = [], [x]
            for W, b, act in zip(Ws, bs, acts):
                Zs.append(linear_forward(As[-1], W, b))
                As.append(act.forward(Zs[-1]))
            total += loss.terms(Zs[-1], As[-1], t).sum()
            g = loss.grad(Zs[-1], As[-1], t)
            dZ = g if loss.fused_with else acts[-1].backward(g, Zs[-1], As[-1])
            for l in range(net.depth - 1, -1, -1):
                dWs[l] += np.outer(As[l][0], dZ[0])
                dbs[l] += dZ[0]
                if l:
                    dZ = acts[l - 1].backward(dZ @ Ws[l].T, Zs[l - 1], As[l])
        box["out"] = total * c, {f"{k}{l + 1}": v * c for l, (dW, db) in enumerate(zip(dWs, dbs))
                                 for k, v in (("W", dW), ("b", db))}

    return Prepared(call, lambda: box["out"], {"loop_samples": m, "scale": case.batch / m}, box=box)


def _torch(case: Case, T: np.ndarray) -> Prepared:
    """The torch reference's own batch loss (its forward, loss table and normaliser), and
    ``torch.autograd.grad`` of it with respect to the parameters: eager, no retained intermediates."""
    import torch

    from ..references import torch_ref

    net = case.network
    names = list(case.params)
    params = {n: torch.from_numpy(case.params[n]).requires_grad_(True) for n in names}
    leaves = list(params.values())
    X, Tt = torch.from_numpy(case.X), torch.from_numpy(T)
    box = {}

    def call():
        L = torch_ref.loss(net, params, X, Tt)
        box["out"] = L, torch.autograd.grad(L, leaves)

    def result():
        L, gs = box["out"]
        return L.detach().numpy(), {n: g.numpy() for n, g in zip(names, gs)}

    return Prepared(call, result, {"torch_threads": torch.get_num_threads()}, box=box)


def _jax(case: Case, T: np.ndarray) -> Prepared:
    """``jax.jit(jax.value_and_grad(...))`` of the JAX reference's own batch loss, compiled before timing."""
    import functools
    import time

    import jax

    from ..references import jax_ref  # switches float64 on: float64 stays float64

    f = jax.jit(jax.value_and_grad(functools.partial(jax_ref.loss, case.network)))
    params = {k: jax.device_put(v) for k, v in case.params.items()}
    X, Tj = jax.device_put(case.X), jax.device_put(T)
    t0 = time.perf_counter()
    jax.block_until_ready(f(params, X, Tj))  # trace + compile + one run, before any timing
    first = time.perf_counter() - t0
    box = {}

    def call():
        box["out"] = jax.block_until_ready(f(params, X, Tj))

    def result():
        L, g = box["out"]
        return np.asarray(L), {k: np.asarray(v) for k, v in g.items()}

    return Prepared(call, result, {"jax_first_call_s": first}, box=box)


def _floor_numpy(case: Case, T: np.ndarray) -> Prepared:
    """The fast engine's products alone, in its layout (feature-major) and thread policy."""
    net, N = case.network, case.batch
    ws = fast.Workspace(net, N)
    Ws = [case.params[f"W{l}"] for l in range(1, net.depth + 1)]
    dt = net.np_dtype
    # Own buffers, in the engine's layout: feature-major, the output sample-major when wide.
    outs = ws.hidden + [np.empty((N, net.sizes[-1]), dt) if ws.output_sample_major
                        else np.empty((net.sizes[-1], N), dt).T]
    dZs = [np.ones((n, N), dt).T for n in net.sizes[1:]]
    dAs = [np.empty((n, N), dt).T for n in net.sizes[1:-1]]
    dWs = [ws.grads[f"W{l}"] for l in range(1, net.depth + 1)]
    X = case.X

    def result():
        return None, {**{f"Z{l}": Z for l, Z in enumerate(outs, 1)}, **{f"dW{l}": g for l, g in enumerate(dWs, 1)}}

    def call():
        with fast._blas_threads(ws.threads):
            A = X
            for W, Z in zip(Ws, outs):
                linear.matmul_into(A, W, Z)
                A = Z
            for l in range(net.depth - 1, -1, -1):
                A_prev = outs[l - 1] if l else X
                linear.matmul_into(A_prev.T, dZs[l], dWs[l])  # one row: the engine's outer product
                if l:
                    linear.matmul_into(dZs[l], Ws[l].T, dAs[l - 1])

    return Prepared(call, result, is_floor=True)


_FLOOR_REFERENCE: dict[int, tuple[Case, dict[str, np.ndarray]]] = {}


def floor_reference(case: Case) -> dict[str, np.ndarray]:
    """What the floors compute, in float64: ``Zl = Z(l-1) @ Wl`` (no bias, no activation), ``dWl = Z(l-1).T @ 1``.

    Kept for the last case asked (both floors check against it).
    """
    if id(case) in _FLOOR_REFERENCE:
        return _FLOOR_REFERENCE[id(case)][1]
    out, A = {}, case.X.astype(np.float64)
    for l in range(1, case.network.depth + 1):
        W = case.params[f"W{l}"].astype(np.float64)
        out[f"dW{l}"] = np.broadcast_to(A.sum(axis=0)[:, None], W.shape)
        A = out[f"Z{l}"] = A @ W
    _FLOOR_REFERENCE.clear()
    _FLOOR_REFERENCE[id(case)] = case, out
    return out


def _floor_torch(case: Case, T: np.ndarray) -> Prepared:
    import torch

    net, N = case.network, case.batch
    Ws = [torch.from_numpy(case.params[f"W{l}"]) for l in range(1, net.depth + 1)]
    dt = Ws[0].dtype
    X = torch.from_numpy(case.X)
    outs = [torch.empty(N, n, dtype=dt) for n in net.sizes[1:]]
    dZs = [torch.ones(N, n, dtype=dt) for n in net.sizes[1:]]
    dAs = [torch.empty(N, n, dtype=dt) for n in net.sizes[1:-1]]
    dWs = [torch.empty_like(W) for W in Ws]

    def call():
        A = X
        for W, Z in zip(Ws, outs):
            torch.mm(A, W, out=Z)
            A = Z
        for l in range(net.depth - 1, -1, -1):
            A_prev = outs[l - 1] if l else X
            torch.mm(A_prev.T, dZs[l], out=dWs[l])
            if l:
                torch.mm(dZs[l], Ws[l].T, out=dAs[l - 1])

    def result():
        return None, {**{f"Z{l}": Z.numpy() for l, Z in enumerate(outs, 1)},
                      **{f"dW{l}": g.numpy() for l, g in enumerate(dWs, 1)}}

    return Prepared(call, result, is_floor=True)


def needs_gap(case: Case) -> bool:
    """Whether any product here is big enough for a BLAS to run it on several threads (and then spin)."""
    sizes, N = case.network.sizes, case.batch
    return max(N * sizes[l] * sizes[l + 1] for l in range(len(sizes) - 1)) >= fast.OPENBLAS_SMALL


def check(case: Case, impl: str, prepared: Prepared) -> list[TensorCheck]:
    """What ``prepared``'s last call left, against the engine (a floor: against its products in float64)."""
    L, grads = prepared.result()
    if prepared.is_floor:
        return check_floor(case, impl, grads, floor_reference(case))
    rows = prepared.extra.get("loop_samples")
    return check_against_engine(case, impl, L, grads, rows if rows != case.batch else None)


class CodeFailed(Exception):
    """The user's code raised, or returned something the bench cannot read (one line)."""


def build_user(code, case: Case) -> Prepared:
    """The user's code (``testing.network``'s runner: a function, an object or a class made ready) on ``case``.

    Everything the code is given is a copy, made once before timing; ``call()`` is then the user's
    ``fn(params, X, Y)`` or ``obj.loss(X, y)`` alone. ``result()`` reads what the last call returned
    as :func:`check` wants it, in the engine's form, or raises :class:`CodeFailed` saying what is
    missing or unreadable.
    """
    view = code.convention
    params = {k: np.array(to_user(view, k, v), order="C") for k, v in case.params.items()}
    X = np.array(to_user(view, "X", case.X), order="C")
    Y = np.array(to_user(view, "Y", case.Y) if case.Y.ndim == 2 else case.Y, order="C")
    box: dict[str, Any] = {}
    if code.kind == "object":
        for k, v in params.items():
            code.obj.params[k] = v
        fn, args, where = code.obj.loss, (X, Y), f"{code.label}.loss"
    else:
        fn, args, where = code.obj, (params, X, Y), code.label

    def call():
        try:
            box["out"] = fn(*args)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:  # noqa: BLE001  (the user's code, whatever it raises)
            from ..testing.signatures import exception

            raise CodeFailed(f"{where} raised {exception(e)}") from None

    def result():
        from ..testing.signatures import Unreadable, UserError

        shape = "trace" if isinstance(box["out"], Mapping) else "loss_grads"
        try:
            values, problems = code.read(code.label, shape, box["out"])
        except UserError as e:
            raise CodeFailed(str(e)) from None
        wanted = ["L"] + [f"d{p}" for p in case.params]
        for name in wanted:
            if name in problems or isinstance(values.get(name), Unreadable) or values.get(name) is None:
                note = problems.get(name) or getattr(values.get(name), "note", None)
                raise CodeFailed(note or f"{code.label} returned no {name}: the bench needs the loss and "
                                         f"every parameter's gradient")
        red, N = case.network.reduction, case.batch
        L = np.asarray(values["L"], dtype=np.float64).reshape(())
        grads = {p: to_engine(view, f"d{p}", np.asarray(values[f"d{p}"]), reduction=red, N=N)
                 for p in case.params}
        return L, grads

    return Prepared(call, result, box=box)


_BUILDERS = {
    "numpy_fast": _numpy_fast, "numpy_trace": _numpy_trace,
    "torch": _torch, "jax": _jax, "floor_numpy": _floor_numpy, "floor_torch": _floor_torch,
}
