"""The fast engine: the loss and every parameter gradient of a batch, and nothing else.

Same hand-derived rules as :mod:`manual_backprop.engine`, in the same order::

    Zl = A(l-1) @ Wl + bl       Al = act_l(Zl)           L = loss(AL or ZL, T)
    dZL = c (AL - T) or dAL * act'(ZL)
    dWl = A(l-1).T @ dZl        dbl = 1.T @ dZl          dA(l-1) = dZl @ Wl.T

but written for training-style work, where only ``L`` and the ``dWl, dbl``
are wanted and the same shapes come back call after call:

* every buffer lives in a :class:`Workspace` and is reused; every product and
  every elementwise step writes into it with ``out=``;
* a hidden layer keeps one buffer: the activation is applied in place over Z,
  since each backward rule can be read off A (ReLU's ``Z > 0`` is ``A > 0``,
  sigmoid's and tanh's derivatives are written in A);
* two scratch buffers take the output and then, in turn, every dZ and dA of
  the backward pass, so memory is the activations plus two layers' worth;
* activations are stored feature-major (an (N, n) view of an (n, N) array):
  on a narrow layer (3 or 10 units) the bias add, the softmax's row max and
  sum, and the column sums run along long contiguous rows instead of N short
  ones. The products do not care: BLAS reads either layout through its
  transpose flags, and :func:`_matmul` picks the order that lets it;
* one-row batches take the vector paths: ``dW`` as an outer product (OpenBLAS
  is very slow on a product with inner dimension 1), ``db`` as a copy;
* small products run on one BLAS thread: starting a second thread costs more
  than it saves there, and a finished multi-threaded call leaves a thread
  spinning (see ``benchmarks/README.md``); a large outer product is split
  over two Python threads (NumPy releases the GIL in its loops).

The numbers agree with :func:`manual_backprop.engine.run` to float rounding:
the elementwise steps are the same operations on the same values; only the
order of a few sums (the loss, the softmax denominator) differs.
An activation or loss without an in-place rule here falls back to its
registry kernels (correct, and allocating).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..description.network import Network
from ..errors import InputError
from ..kernels import ACTIVATIONS, LOSSES

# Below this many multiply-adds per product, BLAS runs on one thread (below
# OPENBLAS_SMALL, OpenBLAS already does so itself and is left alone).
SINGLE_THREAD_BELOW = 2_000_000
OPENBLAS_SMALL = 262_144
# An outer product (one-row batch's dW) at least this large is split over two threads.
PARALLEL_OUTER = 524_288
# An output layer this wide is stored sample-major, the layout of the targets T.
WIDE_OUTPUT = 64


class Workspace:
    """Preallocated buffers for one network and one batch size N, and the plan that uses them.

    ``value_and_grad`` returns the gradient buffers of its workspace: they are
    overwritten by the next call with the same workspace (copy them to keep).
    """

    def __init__(self, network: Network, N: int) -> None:
        if isinstance(N, bool) or not isinstance(N, (int, np.integer)) or N < 1:
            raise InputError(f"workspace batch size must be a positive integer, got {N!r}")
        N = int(N)
        dt = network.np_dtype
        sizes, depth = network.sizes, network.depth
        self.network, self.N, self.dtype = network, N, dt
        widest = max(sizes[1:])
        # A1 .. A(L-1): one feature-major buffer per hidden layer.
        self.hidden = [np.empty((n, N), dt).T for n in sizes[1:-1]]
        # Two scratch buffers: the output, then dZ and dA of each layer in turn.
        self._flat = [np.empty(widest * N, dt), np.empty(widest * N, dt)]
        self.mask = np.empty(widest * N, np.bool_)
        self.ones = np.ones(N, dt)
        self.rows = np.arange(N)
        self.output_sample_major = sizes[-1] >= WIDE_OUTPUT
        self.grads = {name: np.empty(shape, dt) for name, shape in network.parameter_shapes().items()}
        largest = _largest_product(sizes, N)
        self.threads = 1 if OPENBLAS_SMALL <= largest < SINGLE_THREAD_BELOW else None

        # The plan: for layer l = 1..L, its output buffer Z[l], the parameter names, and where dZ[l] lives.
        self.names = [(f"W{l}", f"b{l}") for l in range(1, depth + 1)]
        self.shapes = network.parameter_shapes()
        self.Z = [None] + self.hidden + [self.scratch(0, sizes[-1], self.output_sample_major)]
        loss = LOSSES[network.loss]
        self.loss, self.act_names = loss, network.activations
        self.c = loss.scale(N, sizes[-1], network.reduction)
        # dZL is in scratch 0 (in place over the output) unless a non-identity output
        # activation needs its A while dAL is formed: then in scratch 1.
        in_place = (loss.fused_with is not None or network.activations[-1] == "identity"
                    or network.loss not in ("half_mse", "mse"))
        cur = 0 if in_place else 1
        self.dZ = [None] * (depth + 1)
        self.free = [None] * (depth + 1)
        self.dZ[depth] = self.scratch(cur, sizes[-1], self.output_sample_major)
        self.dZ_flat = self._flat[cur][: N * sizes[-1]]
        self.c_dt = dt.type(self.c)
        # L = c sum(terms): half_mse's terms are ½ D², and halving is exact.
        self.c_loss = self.c_dt * dt.type(0.5) if network.loss == "half_mse" else self.c_dt
        for l in range(depth - 1, 0, -1):  # dA_l (then dZ_l in place) goes in the other scratch buffer
            cur = 1 - cur
            self.dZ[l] = self.scratch(cur, sizes[l])
            self.free[l] = self.scratch(1 - cur, sizes[l])
        self.masks = [None] + [self.mask_like(A) for A in self.hidden]
        self.tmp = [None] + [self.scratch(1, n) for n in sizes[1:-1]]

    def scratch(self, i: int, n: int, sample_major: bool = False) -> np.ndarray:
        """Scratch buffer ``i`` (0 or 1) seen as an (N, n) array."""
        flat = self._flat[i][: n * self.N]
        return flat.reshape(self.N, n) if sample_major else flat.reshape(n, self.N).T

    def mask_like(self, A: np.ndarray) -> np.ndarray:
        """A boolean buffer of A's shape and layout."""
        N, n = A.shape
        flat = self.mask[: N * n]
        return flat.reshape(N, n) if A.flags.c_contiguous and N > 1 else flat.reshape(n, N).T

    def fits(self, network: Network, N: int) -> bool:
        return self.N == N and (self.network is network or self.network == network)


def value_and_grad(
    network: Network,
    params: Mapping[str, np.ndarray],
    X: np.ndarray,
    T: np.ndarray,
    workspace: Workspace | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(L, {"W1": dW1, "b1": db1, ...})`` for the batch ``X`` with targets ``T``.

    ``X`` is (N, n0); ``T`` is (N, K), or for ``softmax_cross_entropy`` also
    integer class labels (N,). Arrays must have the network's dtype (no
    silent casts). ``L`` is a 0-d array of that dtype, as in the engine's trace.
    Without a ``workspace`` a fresh one is made (and the gradients are yours);
    with one, they are its buffers, valid until its next call.
    """
    ws = workspace
    if ws is None:
        ws = Workspace(network, _check_inputs(network, params, X, T))
    elif not ws.fits(network, X.shape[0] if isinstance(X, np.ndarray) and X.ndim == 2 else None):
        N = _check_inputs(network, params, X, T)  # a wrong X or T is named first
        raise InputError(
            f"workspace is for {ws.network.describe()} at batch {ws.N}, "
            f"called with {network.describe()} at batch {N}"
        )
    else:
        _check_inputs(network, params, X, T, ws)
    if ws.threads is None:
        return _run(params, X, T, ws), ws.grads
    with _blas_threads(ws.threads):
        return _run(params, X, T, ws), ws.grads


def _run(params: Mapping[str, np.ndarray], X, T, ws: Workspace) -> np.ndarray:
    network, N = ws.network, ws.N
    depth, acts = network.depth, ws.act_names
    matmul, add, multiply = np.matmul, np.add, np.multiply
    kept_Z: dict[int, np.ndarray] = {}  # only for activations without an in-place rule

    # Forward: Zl = A(l-1) @ Wl + bl, then Al = act(Zl) in place (the output's act is the loss's business).
    A = X
    for l in range(1, depth + 1):
        W, b = ws.names[l - 1]
        Z = ws.Z[l]
        _matmul(A, params[W], Z)
        add(Z, params[b], out=Z)
        if l < depth:
            name = acts[l - 1]
            if name == "relu":
                np.maximum(Z, 0, out=Z)
            elif name != "identity":
                kept_Z.update(_activate(name, Z, l, ws))
        A = Z

    L = _loss_and_dZ(network, ws.loss, ws.Z[depth], T, ws)

    # Backward: dWl = A(l-1).T @ dZl, dbl = 1.T @ dZl, dA(l-1) = dZl @ Wl.T, dZ(l-1) = dA(l-1) * act'.
    grads = ws.grads
    for l in range(depth, 0, -1):
        W, b = ws.names[l - 1]
        dZ = ws.dZ[l]
        A_prev = ws.Z[l - 1] if l > 1 else X
        dW, db = grads[W], grads[b]
        _matmul(A_prev.T, dZ, dW)  # an outer product when N = 1
        if N == 1:
            np.copyto(db, dZ[0])
        else:
            matmul(ws.ones, dZ, out=db)
        if l == 1:
            break
        dA = ws.dZ[l - 1]
        _matmul(dZ, params[W].T, dA)
        name = acts[l - 2]
        if name == "relu":  # dA * (Z > 0), and Z > 0 exactly where A = max(Z, 0) > 0
            mask = ws.masks[l - 1]
            np.greater(A_prev, 0, out=mask)
            multiply(dA, mask, out=dA)
        elif name != "identity":
            _activation_backward(name, dA, A_prev, ws, kept_Z.get(l - 1), ws.free[l - 1])
    return L


def _activate(name: str, Z: np.ndarray, l: int, ws: Workspace) -> dict[int, np.ndarray]:
    """``A = act(Z)`` in place over Z. Returns ``{l: Z copy}`` when the backward will need Z."""
    if name == "identity":
        pass
    elif name == "relu":
        np.maximum(Z, 0, out=Z)
    elif name == "tanh":
        np.tanh(Z, out=Z)
    elif name == "sigmoid":
        _sigmoid_inplace(Z, ws.tmp[l] if l < ws.network.depth else ws.scratch(1, Z.shape[1]))
    elif name == "softmax":
        _softmax_inplace(Z)
    else:  # no in-place rule: the registry's kernel, keeping Z for its backward
        Z_copy = Z.copy()
        Z[...] = ACTIVATIONS[name].forward(Z_copy)
        return {l: Z_copy}
    return {}


def _activation_backward(name: str, dA: np.ndarray, A: np.ndarray, ws: Workspace,
                         Z: np.ndarray | None, free: np.ndarray | None) -> None:
    """``dZ = dA * act'(Z)`` in place over dA, read off A (A is spent afterwards).

    ``free`` is a spare buffer of A's shape, or None (then one is allocated).
    """
    if name == "identity":
        return
    if name == "relu":  # dA * (Z > 0), and Z > 0 exactly where A = max(Z, 0) > 0
        mask = ws.mask_like(A)
        np.greater(A, 0, out=mask)
        np.multiply(dA, mask, out=dA)
    elif name == "sigmoid":  # dA * (A * (1 - A))
        one_minus_A = np.subtract(1, A, out=free)
        np.multiply(A, one_minus_A, out=A)
        np.multiply(dA, A, out=dA)
    elif name == "tanh":  # dA * (1 - A * A)
        np.multiply(A, A, out=A)
        np.subtract(1, A, out=A)
        np.multiply(dA, A, out=dA)
    elif name == "softmax":  # A * (dA - sum_k dA * A)
        s = np.einsum("ij,ij->i", dA, A)
        np.subtract(dA, s[:, None], out=dA)
        np.multiply(dA, A, out=dA)
    else:
        dA[...] = ACTIVATIONS[name].backward(dA.copy(), Z, A)


def _sigmoid_inplace(Z: np.ndarray, tmp: np.ndarray) -> None:
    """``A = 1/(1+e)`` where Z >= 0 and ``e/(1+e)`` where Z < 0, ``e = exp(-|Z|)``: the engine's formula.

    The numerator (1 or e) is ``max(e, [Z >= 0])``, exact since e <= 1: an
    arithmetic select, much faster than a masked copy.
    """
    np.greater_equal(Z, 0, out=tmp)  # 1.0 where Z >= 0, else 0.0
    np.abs(Z, out=Z)
    np.negative(Z, out=Z)
    np.exp(Z, out=Z)                 # e, in (0, 1]
    np.maximum(Z, tmp, out=tmp)      # numerator
    np.add(Z, 1, out=Z)              # 1 + e
    np.divide(tmp, Z, out=Z)


def _softmax_inplace(Z: np.ndarray) -> np.ndarray:
    """``exp(Z - max) / sum(exp(Z - max))`` row by row, in place; returns the row sums."""
    np.subtract(Z, Z.max(axis=1, keepdims=True), out=Z)
    np.exp(Z, out=Z)
    s = Z.sum(axis=1, keepdims=True)
    np.divide(Z, s, out=Z)
    return s


def _loss_and_dZ(network: Network, loss, Z: np.ndarray, T: np.ndarray, ws: Workspace) -> np.ndarray:
    """``L``, with dL/dZL written into ``ws.dZ[L]``.

    On entry scratch 0 holds ZL (the output layer's activation not yet applied).
    """
    N, K = Z.shape
    dt = Z.dtype.type
    c = ws.c
    act = network.activations[-1]
    labels = T.ndim == 1

    if network.loss == "softmax_cross_entropy":
        # L = c sum_i [log s_i - (Z_iy - m_i)] with s_i = sum_k exp(Z_ik - m_i); dZ = c (P - T).
        np.subtract(Z, Z.max(axis=1, keepdims=True), out=Z)
        if labels:
            picked = Z[ws.rows, T].sum()
            weights = None
        else:
            picked = np.einsum("ij,ij->", T, Z)
            weights = T.sum(axis=1)
        np.exp(Z, out=Z)
        s = Z.sum(axis=1, keepdims=True)
        log_s = np.log(s[:, 0])
        total = (log_s.sum() if weights is None else weights @ log_s) - picked
        np.divide(Z, s, out=Z)
        if labels:
            Z[ws.rows, T] -= 1
        else:
            np.subtract(Z, T, out=Z)
        np.multiply(Z, dt(c), out=Z)
        return np.asarray(total * dt(c), dtype=Z.dtype)

    if network.loss in ("half_mse", "mse") and act in ("identity", "relu", "sigmoid", "tanh", "softmax"):
        if act != "identity":
            _activate(act, Z, network.depth, ws)
        D = ws.dZ[network.depth]                      # Z itself for an identity output
        np.subtract(Z, T, out=D)                      # D = A - T
        flat = ws.dZ_flat                             # D's memory, whatever its layout
        sq = flat @ flat
        if network.loss == "half_mse":                # L = c sum ½ D²,  dA = c D
            L = np.asarray(sq * ws.c_loss)
            np.multiply(D, ws.c_dt, out=D)
        else:                                         # L = c sum D²,    dA = 2c D
            L = np.asarray(sq * ws.c_loss)
            np.multiply(D, dt(2) * ws.c_dt, out=D)
        if act != "identity":
            _activation_backward(act, D, Z, ws, None, None)
        return L

    # Any other loss (bce, or a new one): the registry's kernels, on copies.
    Tm = T if not labels else _one_hot(T, K, Z.dtype)
    Zc = Z.copy()
    A = ACTIVATIONS[act].forward(Zc)
    L = loss.value(Zc, A, Tm, network.reduction)
    g = loss.gradient(Zc, A, Tm, network.reduction)
    if loss.fused_with is None:
        g = ACTIVATIONS[act].backward(g, Zc, A)
    np.copyto(Z, g)
    return L


def _one_hot(labels: np.ndarray, K: int, dtype: np.dtype) -> np.ndarray:
    T = np.zeros((labels.shape[0], K), dtype=dtype)
    T[np.arange(labels.shape[0]), labels] = 1
    return T


def _matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """``out = a @ b`` through BLAS whatever out's layout: a feature-major out is filled as ``b.T @ a.T``.

    An inner dimension of 1 (a one-row batch's dW, a one-unit layer's dA) is an
    outer product: a broadcast multiply, where OpenBLAS's GEMM is very slow.
    """
    if a.shape[1] == 1:
        _outer(a, b, out)
    elif out.flags.c_contiguous:
        np.matmul(a, b, out=out)
    else:
        np.matmul(b.T, a.T, out=out.T)


def _outer(col: np.ndarray, row: np.ndarray, out: np.ndarray) -> None:
    """``out = col * row``, (m, 1) * (1, n): on two threads when large (NumPy releases the GIL).

    A broadcast multiply runs well below memory speed on one core; a second
    thread nearly halves a 1024 x 1024 outer product.
    """
    m = out.shape[0]
    if out.size < PARALLEL_OUTER or m < 2:
        np.multiply(col, row, out=out)
        return
    h = m // 2
    job = _helper().submit(np.multiply, col[h:], row, out=out[h:])
    np.multiply(col[:h], row, out=out[:h])
    job.result()


_HELPER = None


def _helper():
    """One worker thread, started on first use."""
    global _HELPER
    if _HELPER is None:
        from concurrent.futures import ThreadPoolExecutor

        _HELPER = ThreadPoolExecutor(1, thread_name_prefix="manual_backprop.fast")
    return _HELPER


def _largest_product(sizes: tuple[int, ...], N: int) -> int:
    return max(N * sizes[l] * sizes[l + 1] for l in range(len(sizes) - 1))


def _check_inputs(network: Network, params: Mapping[str, np.ndarray], X, T,
                  ws: Workspace | None = None) -> int:
    """N, after checking every array's type, dtype and shape (no casts, no broadcasting)."""
    dt = network.np_dtype if ws is None else ws.dtype
    shapes = network.parameter_shapes() if ws is None else ws.shapes
    for name, shape in shapes.items():
        p = params.get(name)
        if not isinstance(p, np.ndarray) or p.shape != shape or p.dtype != dt:
            got = "missing" if p is None else f"{getattr(p, 'dtype', type(p).__name__)} {getattr(p, 'shape', '')}"
            raise InputError(f"parameter {name} must be a {network.dtype} array of shape {shape}, got {got}")
    if not isinstance(X, np.ndarray) or X.ndim != 2 or X.shape[1] != network.sizes[0] or X.dtype != dt:
        raise InputError(f"X must be a {network.dtype} array of shape (N, {network.sizes[0]}), "
                         f"got {getattr(X, 'dtype', type(X).__name__)} {getattr(X, 'shape', '')}")
    N = X.shape[0]
    K = network.sizes[-1]
    if not isinstance(T, np.ndarray):
        raise InputError(f"T must be a NumPy array, got {type(T).__name__}")
    if T.ndim == 2 and T.shape == (N, K) and T.dtype == dt and N:
        return N
    labels_ok = network.loss == "softmax_cross_entropy" and T.ndim == 1 and T.dtype.kind in "iu"
    if not labels_ok and (T.shape != (N, K) or T.dtype != dt):
        raise InputError(f"T must be a {network.dtype} array of shape ({N}, {K}) "
                         f"(or integer labels (N,) for softmax_cross_entropy), got {T.dtype} {T.shape}")
    if labels_ok and T.shape != (N,):
        raise InputError(f"labels T must have shape ({N},), got {T.shape}")
    if N == 0:
        raise InputError("X is an empty batch (N = 0)")
    return N


class _blas_threads:
    """Run OpenBLAS on ``n`` threads inside the block (``None``: leave it alone).

    Uses threadpoolctl when installed; found once, then each switch is one
    call into the library (a couple of microseconds).
    """

    _controller = None
    _searched = False

    def __init__(self, n: int | None) -> None:
        self.n = n
        self.before = None

    @classmethod
    def _openblas(cls):
        if not cls._searched:
            cls._searched = True
            try:
                from threadpoolctl import ThreadpoolController
            except ImportError:
                return None
            found = ThreadpoolController().select(internal_api="openblas").lib_controllers
            cls._controller = found[0] if found else None
        return cls._controller

    def __enter__(self):
        lib = self._openblas() if self.n is not None else None
        if lib is not None:
            self.before = lib.get_num_threads()
            if self.before != self.n:
                lib.set_num_threads(self.n)
            else:
                self.before = None
        self.lib = lib
        return self

    def __exit__(self, *exc) -> None:
        if self.before is not None:
            self.lib.set_num_threads(self.before)
