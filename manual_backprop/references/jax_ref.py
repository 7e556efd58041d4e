"""The JAX reference: the engine's maths written with jax.numpy, every gradient from ``jax.value_and_grad``.

JAX differentiates a function with respect to its arguments only, so the
intermediate gradients come from the zero-perturbation trick: the loss takes
arrays ``epsZ_l`` and ``epsA_l``, all zero, added to Z_l and A_l as they are
made. Adding zero changes no value, and ``dL/d epsZ_l = dL/dZ_l``::

    Z_l = A_(l-1) @ W_l + b_l + epsZ_l
    A_l = act_l(Z_l) + epsA_l
    L   = c * loss_sum(Z_L or A_L, T)

One ``value_and_grad`` with respect to (params, X, epsZ, epsA) gives dW_l,
db_l, dX, dZ_l and dA_l; the forward values come back as auxiliary output.
"""

from __future__ import annotations

import functools

import jax

# float64 must be switched on before any array is made: with JAX's default
# (x64 off) a float64 input is silently turned into float32 and every gradient
# comes back float32, 1e-7 away from the float64 engine. float32 inputs stay
# float32 either way. This is a process-wide setting.
jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402  (after the x64 switch, on purpose)
import numpy as np  # noqa: E402

from ..description.case import Case  # noqa: E402
from ..description.network import Network  # noqa: E402
from ..errors import InputError  # noqa: E402
from ..kernels import LOSSES  # noqa: E402

#: ``A = act(Z)``. ``jax.nn.relu`` has gradient 0 at Z == 0 (a custom JVP), the
#: project's convention; ``jnp.maximum(Z, 0)`` and ``jnp.clip`` give 1/2 there.
ACTIVATIONS = {
    "identity": lambda Z: Z,
    "sigmoid": jax.nn.sigmoid,
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "softmax": lambda Z: jax.nn.softmax(Z, axis=-1),
}

#: ``sum(terms)``, before the reduction's factor c; T is the (N, K) target matrix.
#: bce and cross-entropy are taken from the logits Z through log_sigmoid and
#: log_softmax, which stay finite however far the output saturates.
LOSS_SUMS = {
    "half_mse": lambda Z, A, T: 0.5 * ((A - T) ** 2).sum(),
    "mse": lambda Z, A, T: ((A - T) ** 2).sum(),
    "bce": lambda Z, A, T: -(T * jax.nn.log_sigmoid(Z) + (1 - T) * jax.nn.log_sigmoid(-Z)).sum(),
    "softmax_cross_entropy": lambda Z, A, T: -(T * jax.nn.log_softmax(Z, axis=1)).sum(),
}

#: Compile the gradient function with ``jax.jit``? On, as measured on this machine:
#: eager JAX compiles every primitive of the forward and backward separately for
#: each new shape, so even a single run is slower eager (seed-002: about 2 s eager,
#: 0.8 s jitted, first call; 20 ms against 1 ms warm). Compiled functions are
#: cached per network here and per (shapes, dtypes) by jit itself.
JIT = True


def version() -> str:
    return jax.__version__


def run(case: Case, device: str | None = None) -> dict[str, np.ndarray]:
    """The named trace of ``case`` (``case.network.names()``, in order), as NumPy arrays."""
    net = case.network
    dev = _device(device)
    put = functools.partial(jax.device_put, device=dev)
    params = {k: put(v) for k, v in case.params.items()}
    X = put(case.X)
    Y = put(case.Y)
    N, dt = case.X.shape[0], net.np_dtype
    epsZ = [put(np.zeros((N, n), dt)) for n in net.sizes[1:]]
    epsA = [put(np.zeros((N, n), dt)) for n in net.sizes[1:]]

    (L, (Zs, As)), (dparams, dX, dZs, dAs) = _grad_fn(net)(params, X, epsZ, epsA, Y)

    tensors = {"X": X, "L": L, "dX": dX}
    for l in range(1, net.depth + 1):
        tensors[f"Z{l}"], tensors[f"A{l}"] = Zs[l - 1], As[l - 1]
        tensors[f"dZ{l}"], tensors[f"dA{l}"] = dZs[l - 1], dAs[l - 1]
        tensors[f"dW{l}"], tensors[f"db{l}"] = dparams[f"W{l}"], dparams[f"b{l}"]
    trace = {}
    for name in net.names():
        trace[name] = case.Y if name == "Y" else _numpy(tensors[name], name, net.np_dtype)
    return trace


def _loss(net: Network, params, X, epsZ, epsA, Y):
    """``(L, (Zs, As))`` with the zero perturbations added after every Z_l and A_l."""
    T = jax.nn.one_hot(Y, net.sizes[-1], dtype=net.np_dtype) if Y.ndim == 1 else Y  # labels -> rows
    A = X
    Zs, As = [], []
    for l, act in enumerate(net.activations, start=1):
        # "highest": on a GPU, float32 matmuls otherwise drop to TF32 (no effect on CPU)
        Z = jnp.matmul(A, params[f"W{l}"], precision="highest") + params[f"b{l}"] + epsZ[l - 1]
        A = ACTIVATIONS[act](Z) + epsA[l - 1]
        Zs.append(Z)
        As.append(A)
    c = LOSSES[net.loss].scale(Z.shape[0], Z.shape[1], net.reduction)
    return LOSS_SUMS[net.loss](Z, A, T) * c, (Zs, As)


@functools.lru_cache(maxsize=64)
def _grad_fn(net: Network):
    """``value_and_grad`` of ``net``'s loss with respect to (params, X, epsZ, epsA)."""
    f = jax.value_and_grad(functools.partial(_loss, net), argnums=(0, 1, 2, 3), has_aux=True)
    return jax.jit(f) if JIT else f


def _device(device: str | None):
    name = (device or "cpu").lower()
    if name == "cpu":
        return jax.devices("cpu")[0]
    if name in ("gpu", "cuda"):
        try:
            return jax.devices("gpu")[0]
        except RuntimeError:
            raise InputError(f"--device {device}: jax sees no GPU on this machine") from None
    raise InputError(f"unknown device {device!r}; known: cpu, gpu (or cuda)")


def _numpy(a, name: str, dtype: np.dtype) -> np.ndarray:
    out = np.array(a)  # a writable copy on the host
    if out.dtype != dtype:
        raise TypeError(f"jax reference: {name} came back as {out.dtype}, but the network is {dtype}")
    return out


def layer_gradients(linear: bool, activation: str, x: np.ndarray, params: dict[str, np.ndarray],
                    dout: np.ndarray) -> dict[str, np.ndarray]:
    """One layer ``out = act(x @ W + b)`` (or ``act(x)``) and the gradients of ``(out * dout).sum()``, in float64.

    Returns ``out``, ``dx`` and, for a Linear layer, ``dW`` and ``db``.
    """
    f64 = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
    out, (dx, dparams) = _layer_fn(linear, activation)(f64(x), {k: f64(v) for k, v in params.items()}, f64(dout))
    return {k: np.asarray(v) for k, v in {"out": out, "dx": dx, **{f"d{k}": v for k, v in dparams.items()}}.items()}


@functools.lru_cache(maxsize=None)
def _layer_fn(linear: bool, activation: str):
    """The layer and its gradient as one jitted function: measured here, compiling it whole is
    about 2.5 times faster than running it eagerly, which compiles every primitive on its own."""
    act = ACTIVATIONS[activation]

    def layer(x, params):
        return act(x @ params["W"] + params["b"] if linear else x)

    def value_and_grads(x, params, dout):
        return layer(x, params), jax.grad(lambda x, p: (layer(x, p) * dout).sum(), argnums=(0, 1))(x, params)

    return jax.jit(value_and_grads)
