"""The fast engine: the loss and every parameter gradient of a batch, and nothing else.

The same hand-derived rules as :mod:`manual_backprop.engine`, in the same order::

    Zl = A(l-1) @ Wl + bl       Al = act_l(Zl)           L = loss(AL or ZL, T)
    dZL = c (AL - T) or dAL * act'(ZL)
    dWl = A(l-1).T @ dZl        dbl = 1.T @ dZl          dA(l-1) = dZl @ Wl.T

and the very same kernels: every activation's forward and backward, and the
loss's value and gradient, are the registry's (:mod:`manual_backprop.kernels`),
called with ``out=`` and ``scratch=`` buffers of the workspace. Which rule
runs is never decided here by name, so a wrong rule patched into the
registry runs here too (in workspaces made after the patch).

What is the fast engine's own is how the work is laid out, for
training-style work, where only ``L`` and the ``dWl, dbl`` are wanted and
the same shapes come back call after call:

* every buffer lives in a :class:`Workspace` and is reused; every product and
  every elementwise step writes into it with ``out=``;
* a hidden layer keeps one buffer: the activation is applied in place over Z
  when its backward can be read off A (the registry's ``backward_from_A``:
  ReLU's ``Z > 0`` is ``A > 0``, sigmoid's and tanh's derivatives are written
  in A), and A is passed for Z; otherwise a copy of Z is kept for it;
* two scratch buffers take the output and then, in turn, every dZ and dA of
  the backward pass, so memory is the activations plus two layers' worth. At
  the output, Z stays in the first and A goes to the second when the loss
  reads the logits (fused) or the backward needs Z; the gradient is then
  written over A;
* activations are stored feature-major (an (N, n) view of an (n, N) array):
  on a narrow layer (3 or 10 units) the bias add, the softmax's row max and
  sum, and the column sums run along long contiguous rows instead of N short
  ones. The products do not care: BLAS reads either layout through its
  transpose flags, and the Linear kernels' ``matmul_into`` picks the order that lets it;
* one-row batches take the vector paths: ``dW`` as an outer product (OpenBLAS
  is very slow on a product with inner dimension 1; the Linear kernels pick
  its loop by size, a zero-padded GEMM or ``np.einsum``'s), ``db`` as a copy;
* small products run on one BLAS thread: starting a second thread costs more
  than it saves there, and a finished multi-threaded call leaves a thread
  spinning (see ``benchmarks/README.md``).

The numbers agree with :func:`manual_backprop.engine.run` to float rounding:
the elementwise steps are the same kernels on the same values; only the
matrix products (their layout, hence BLAS's order of accumulation) and the
order of a few sums (the softmax denominator over a feature-major layout) differ.
A kernel that takes no ``out=`` (a plain function registered by a test or a
new activation) works too: its result is copied into the buffer.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..description.network import Network
from ..errors import InputError
from ..kernels import ACTIVATIONS, LOSSES, linear
from ..kernels.regularization import l2_gradient, l2_penalty

# Below this many multiply-adds per product, BLAS runs on one thread (below
# OPENBLAS_SMALL, OpenBLAS already does so itself and is left alone).
SINGLE_THREAD_BELOW = 2_000_000
OPENBLAS_SMALL = 262_144
# An output layer this wide is stored sample-major, the layout of the targets T.
WIDE_OUTPUT = 64


def refuse_norms(network: Network) -> None:
    """An :class:`InputError` for a network with a norm: the fast engine has no norm kernels and would leave
    it out, so it refuses rather than compute another network's gradients."""
    if network.has_norm:
        raise InputError(f"the fast engine has no norms (network {network.describe()}): it would leave them "
                         f"out; use the checking engine (manual_backprop.run) for a network with batchnorm or "
                         f"layernorm")


class Workspace:
    """Preallocated buffers for one network and one batch size N, and the plan that uses them.

    ``value_and_grad`` returns the gradient buffers of its workspace: they are
    overwritten by the next call with the same workspace (copy them to keep).
    The rules are looked up in the registry once, when the workspace is made.
    """

    def __init__(self, network: Network, N: int) -> None:
        if isinstance(N, bool) or not isinstance(N, (int, np.integer)) or N < 1:
            raise InputError(f"workspace batch size must be a positive integer, got {N!r}")
        N = int(N)
        refuse_norms(network)
        dt = network.np_dtype
        sizes, depth = network.sizes, network.depth
        K = sizes[-1]
        self.network, self.N, self.dtype = network, N, dt
        widest = max(sizes[1:])
        acts = [None] + [ACTIVATIONS[a] for a in network.activations]  # acts[l] is layer l's
        self.loss, self.reduction = LOSSES[network.loss], network.reduction
        self.forward = [None] + [a.forward_into for a in acts[1:]]
        self.backward = [None] + [a.backward_into for a in acts[1:]]
        # A1 .. A(L-1): one feature-major buffer per hidden layer.
        self.hidden = [np.empty((n, N), dt).T for n in sizes[1:-1]]
        # Two scratch buffers: the output, then dZ and dA of each layer in turn.
        self._flat = [np.empty(widest * N, dt), np.empty(widest * N, dt)]
        self.ones = np.ones(N, dt)
        self.output_sample_major = K >= WIDE_OUTPUT
        self.grads = {name: np.empty(shape, dt) for name, shape in network.parameter_shapes().items()}
        largest = _largest_product(sizes, N)
        self.threads = 1 if OPENBLAS_SMALL <= largest < SINGLE_THREAD_BELOW else None

        # The plan: for layer l = 1..L, its buffer Z[l], the parameter names, and where dZ[l] lives.
        self.names = [(f"W{l}", f"b{l}") for l in range(1, depth + 1)]
        self.shapes = network.parameter_shapes()
        self.Z = [None] + self.hidden + [self.scratch(0, K, self.output_sample_major)]
        # What layer l's backward gets for Z: A itself (over Z), or a copy of Z kept before A is made.
        self.kept = [None] + [None if acts[l].backward_from_A else np.empty((sizes[l], N), dt).T
                              for l in range(1, depth)]
        self.Z_seen = [None] + [self.hidden[l - 1] if self.kept[l] is None else self.kept[l]
                                for l in range(1, depth)]
        self.tmp = [None] + [self.scratch(1, n) for n in sizes[1:-1]]  # the forward's scratch: free until the output

        # The output layer: Z in scratch 0. A over it, unless the loss reads Z or the backward needs it.
        fused = self.loss.fused_with is not None
        Z_out = self.Z[depth]
        if fused or not acts[depth].backward_from_A:
            self.A_out, self.Z_out_seen, self.out_scratch = self.scratch(1, K, self.output_sample_major), Z_out, None
        else:
            self.A_out, self.Z_out_seen, self.out_scratch = Z_out, Z_out, self.scratch(1, K, self.output_sample_major)
        self.dZ = [None] * (depth + 1)
        self.free = [None] * (depth + 1)
        if fused:                                # dZL over A, in scratch 1
            self.dZ[depth], self.value_scratch = self.A_out, None
        elif self.A_out is Z_out:                # dAL (then dZL in place) in scratch 1
            self.dZ[depth] = self.value_scratch = self.out_scratch
        else:                                    # Z and A both kept: dAL in a buffer of its own
            self.dZ[depth] = self.value_scratch = np.empty_like(Z_out)
        cur = 1
        for l in range(depth - 1, 0, -1):  # dA_l (then dZ_l in place) goes in the other scratch buffer
            cur = 1 - cur
            self.dZ[l] = self.scratch(cur, sizes[l])
            self.free[l] = self.scratch(1 - cur, sizes[l])

    def scratch(self, i: int, n: int, sample_major: bool = False) -> np.ndarray:
        """Scratch buffer ``i`` (0 or 1) seen as an (N, n) array."""
        flat = self._flat[i][: n * self.N]
        return flat.reshape(self.N, n) if sample_major else flat.reshape(n, self.N).T

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

    ``X`` is (N, n0); ``T`` is (N, K), or for a loss that takes labels
    (``softmax_cross_entropy``) also integer class labels (N,). Arrays must
    have the network's dtype (no silent casts). ``L`` is a 0-d array of that
    dtype, as in the engine's trace.
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
    depth = ws.network.depth
    forward, backward, kept = ws.forward, ws.backward, ws.kept

    # Forward: Zl = A(l-1) @ Wl + bl, then Al = act(Zl) over Zl (the output's act is the loss's business).
    A = X
    for l in range(1, depth + 1):
        W, b = ws.names[l - 1]
        Z = ws.Z[l]
        linear.linear_forward(A, params[W], params[b], out=Z)
        if l < depth:
            if kept[l] is not None:  # the backward needs Z itself
                np.copyto(kept[l], Z)
            forward[l](Z if kept[l] is None else kept[l], out=Z, scratch=ws.tmp[l])
        A = Z

    L = _loss_and_dZ(T, ws)
    net = ws.network
    if net.regularized:  # L = L_data + L_reg; each dWl gains 2fλ Wl (the same kernels as the trace)
        L = np.asarray(L + l2_penalty((params[n] for n in net.l2_names()), net.l2, net.l2_convention))

    # Backward: dWl = A(l-1).T @ dZl, dbl = 1.T @ dZl, dA(l-1) = dZl @ Wl.T, dZ(l-1) = dA(l-1) * act'.
    grads = ws.grads
    for l in range(depth, 0, -1):
        W, b = ws.names[l - 1]
        dZ = ws.dZ[l]
        A_prev = ws.Z[l - 1] if l > 1 else X
        dW, db = grads[W], grads[b]
        linear.linear_dW(A_prev, dZ, out=dW)
        linear.linear_db(dZ, out=db, ones=ws.ones)
        if net.regularized:
            dW += l2_gradient(params[W], net.l2, net.l2_convention)
            if net.l2_biases:
                db += l2_gradient(params[b], net.l2, net.l2_convention)
        if l == 1:
            break
        dA = ws.dZ[l - 1]
        linear.linear_dA_prev(dZ, params[W], out=dA)
        backward[l - 1](dA, ws.Z_seen[l - 1], A_prev, out=dA, scratch=ws.free[l - 1])  # dZ over dA
    return L


def _loss_and_dZ(T: np.ndarray, ws: Workspace) -> np.ndarray:
    """``L``, with dL/dZL written into ``ws.dZ[L]``: AL = act(ZL), the loss's value and gradient,
    and (unfused) the output activation's backward, all the registry's kernels.

    On entry scratch 0 holds ZL. The kernels get ZL itself for Z, or AL where
    AL was written over ZL (an unfused loss reads only A, and the activation
    promised ``backward_from_A``).
    """
    depth, loss = ws.network.depth, ws.loss
    Z, A = ws.Z_out_seen, ws.A_out
    ws.forward[depth](ws.Z[depth], out=A, scratch=ws.out_scratch)
    L = loss.value(Z, A, T, ws.reduction, scratch=ws.value_scratch)
    g = loss.gradient(Z, A, T, ws.reduction, out=ws.dZ[depth])  # dZL if fused, else dAL
    if loss.fused_with is None:
        ws.backward[depth](g, Z, A, out=g)
    return L


def _largest_product(sizes: tuple[int, ...], N: int) -> int:
    return max(N * sizes[l] * sizes[l + 1] for l in range(len(sizes) - 1))


def _check_inputs(network: Network, params: Mapping[str, np.ndarray], X, T,
                  ws: Workspace | None = None) -> int:
    """N, after checking every array's type, dtype and shape (no casts, no broadcasting)."""
    refuse_norms(network)
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
    loss = LOSSES[network.loss] if ws is None else ws.loss
    labels_ok = loss.labels and T.ndim == 1 and T.dtype.kind in "iu"
    if not labels_ok and (T.shape != (N, K) or T.dtype != dt):
        takers = " or ".join(name for name, l in LOSSES.items() if l.labels)
        raise InputError(f"T must be a {network.dtype} array of shape ({N}, {K}) "
                         f"(or integer labels (N,) for {takers}), got {T.dtype} {T.shape}")
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
