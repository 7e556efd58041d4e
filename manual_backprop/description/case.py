"""A :class:`Case`: a network with its parameters and data, checked before anything runs.

Whatever reaches the engine or a reference has passed :func:`make_case`:
every shape fits the network exactly (no broadcasting, so a (N,) target
never meets a (N, 1) output), every value is finite, every array has the
network's float dtype, and labels and targets are in range. Anything else is
an :class:`~manual_backprop.errors.InputError` naming the tensor and index.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping

import numpy as np

from ..errors import InputError
from ..kernels.losses import one_hot
from .convention import ROW, Convention, accepted_shapes, shape_text, to_engine, to_user, written_biases
from .network import Network
from .optimizer import OptimizerStep, sgd


@dataclass(frozen=True)
class Claim:
    """A value derived by hand (or computed by the user's code), and how precisely it was written.

    ``value`` has the tensor's shape (``dW1`` is (n0, n1), ``db1`` (n1,), ``Z1``
    (N, n1), ``L`` ()), or the transposed 2-D shape, which ``validate`` names
    as the transposed layout. ``resolution`` has the same shape: half a unit in
    the last written decimal place, element by element, or 0 where the claim is
    exact. A claimed element is right when::

        |value - true| <= resolution + tolerance

    the tolerance being the comparison's own (``K * E + floor``). Resolution 0
    (exact: judged with the tolerance alone) comes from ``exact = true`` in a
    file's ``[claimed]`` table, or ``dZ1 = { value = [...], exact = true }``
    for one tensor; and a plain array given to :func:`make_case` as a claim
    (``claimed={"dW1": array}``) always becomes ``Claim(value, zeros)``:
    exact, as every array computed in Python is. Pass a ``Claim`` yourself to
    give another resolution.
    """

    value: np.ndarray
    resolution: np.ndarray


@dataclass(frozen=True)
class Case:
    """Everything one run needs. Build it with :func:`make_case` (or load a file)."""

    network: Network
    params: dict[str, np.ndarray]
    X: np.ndarray
    Y: np.ndarray
    title: str = ""
    seed: int = 0
    claimed: dict[str, Claim] = field(default_factory=dict)
    learning_rate: float | None = None
    source: str = "<options>"
    #: The parameters drawn from ``seed`` because the file or the caller did not give them.
    drawn: tuple[str, ...] = ()
    #: ``[optimizer]``: the step to take (None: the plain step of ``learning_rate``, if any).
    optimizer: OptimizerStep | None = None
    #: How the user writes the tensors (layout, where the 1/N lives, bias shapes): a view only. Every
    #: array above is in the engine's form (row layout, flat biases, deltas as gradients); claims are
    #: kept as written.
    convention: Convention = ROW

    def shown(self, name: str, value: Any, like: tuple[int, ...] | None = None) -> np.ndarray:
        """The engine's ``value`` of tensor ``name`` as this case's user writes it (its layout, its 1/N,
        its bias shapes; ``like``: the shape this very tensor was claimed in)."""
        return to_user(self.convention, name, value, reduction=self.network.reduction, N=self.batch, like=like)

    def describe_network(self) -> str:
        """The network and, when not the default, how its tensors are written:
        ``2-4-1 tanh/sigmoid, bce (mean), float64, column layout, per-sample deltas``."""
        view = self.convention.describe()
        return self.network.describe() + (f", {view}" if view else "")

    def in_engine_form(self, name: str, value: Any) -> np.ndarray:
        """The user's ``value`` of tensor ``name`` in the engine's form (the inverse of :meth:`shown`)."""
        return to_engine(self.convention, name, value, reduction=self.network.reduction, N=self.batch)

    @property
    def step(self) -> OptimizerStep | None:
        """The one optimiser step the case asks for: ``[optimizer]``, else ``[sgd]``'s plain step, else None."""
        if self.optimizer is not None:
            return self.optimizer
        return sgd(self.learning_rate) if self.learning_rate is not None else None

    @property
    def T(self) -> np.ndarray:
        """The target as a matrix of the output's shape: Y itself, or one-hot rows for labels."""
        if self.Y.ndim == 1:
            return one_hot(self.Y, self.network.sizes[-1], self.network.np_dtype)
        return self.Y

    @property
    def batch(self) -> int:
        return self.X.shape[0]


def make_case(
    network: Network,
    params: Mapping[str, Any] | None = None,
    X: Any = None,
    Y: Any = None,
    *,
    seed: int = 0,
    batch: int = 4,
    title: str = "",
    claimed: Mapping[str, Claim] | None = None,
    learning_rate: float | None = None,
    source: str = "<options>",
    from_file: bool = False,
    optimizer: OptimizerStep | None = None,
    layout: str = "row",
    deltas: str = "gradient",
) -> Case:
    """Fill in what is missing from ``seed`` and check everything against ``network``.

    Missing parameters are drawn with non-symmetric weights (scaled by
    1/sqrt(fan-in)) and non-zero biases; missing data with ``batch`` rows.
    Parameters and data come from separate streams of the seed, so giving one
    does not change the other. ``from_file`` names each array with its table
    in messages (``net.toml: [data] X has NaN at index [0, 1]``).

    ``claimed`` maps tensor names (``L``, ``Z1``, ``dW1``, ...) to a
    :class:`Claim` (kept as it is) or to a plain array (a NumPy array or nested
    lists), which is checked as every other array is (the network's float
    dtype, finite, the tensor's shape or its transpose, a known name) and
    becomes the exact claim ``Claim(value, zeros)``.

    ``layout`` and ``deltas`` say how every array is written (:mod:`.convention`): ``layout="column"``
    takes ``X`` (n0, N), ``Wl`` (nl, n(l-1)), ``bl`` (nl, 1) or flat, ``Y`` (K, N) (labels stay flat);
    ``deltas="per_sample"`` reads claimed ``dZl``, ``dAl``, ``dX`` as N times the gradients. A bias may
    be written flat or in the layout's 2-D form. The case holds the engine's form
    (:attr:`Case.convention` remembers the user's, and :meth:`Case.shown` turns a tensor back).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"{source}: seed must be a non-negative integer, got {_short(seed)}")
    params = dict(params or {})
    try:
        convention = Convention(layout, deltas)
    except InputError as exc:
        raise InputError(f"{source}: {exc}") from None
    shapes = network.parameter_shapes()
    unknown = sorted(set(params) - set(shapes))
    if unknown:
        raise InputError(
            f"{source}: [parameters] has unknown name {unknown[0]!r}; this network has "
            f"{', '.join(shapes)}"
        )
    if X is None and Y is None:
        _check_batch(batch, source)
    check_memory(network, batch if X is None and Y is None else 1, source)
    in_params = f"{source}: [parameters] " if from_file else f"{source}: "
    in_data = f"{source}: [data] " if from_file else f"{source}: "
    drawn = random_parameters(network, seed)
    full, written = {}, {}
    for name in shapes:
        if name not in params:
            full[name] = drawn[name]
            if params and name.startswith(("gamma", "beta")):  # given weights: a norm's defaults, 1 and 0
                full[name] = (np.ones if name.startswith("gamma") else np.zeros)(shapes[name], network.np_dtype)
            continue
        given = _float_array(params[name], network, name, in_params)
        full[name] = np.ascontiguousarray(to_engine(convention, name, given))
        _expect_shape(full[name], shapes[name], name, in_params, convention, given.shape)
        written[name] = given.shape
    convention = dataclasses.replace(convention, biases=written_biases(layout, written))
    column = convention.layout == "column"
    if X is None and Y is None:
        X, Y = random_data(network, seed, batch)
        if column:  # drawn in the engine's form: the user's is the transpose
            X, Y = X.T, (Y.T if Y.ndim == 2 else Y)
    elif X is None or Y is None:
        missing = "X" if X is None else "Y"
        raise InputError(f"{source}: [data] gives {'Y' if missing == 'X' else 'X'} but not {missing}; give both or neither")
    X = _float_array(X, network, "X", in_data)
    given = _shape(X)
    if column and X.ndim == 2:
        X = np.ascontiguousarray(X.T)
    if X.ndim >= 1 and X.shape[0] == 0:
        raise InputError(f"{in_data}X is an empty batch (N = 0); the mean over no samples is undefined")
    if X.ndim != 2 or X.shape[1] != network.sizes[0]:
        expected = f"({network.sizes[0]}, N)" if column else f"(N, {network.sizes[0]})"
        raise InputError(
            f"{in_data}X has shape {given}, expected {expected} for input width {network.sizes[0]}"
            + (" (the column layout: one sample per column)" if column else "")
        )
    if network.has_batchnorm and X.shape[0] == 1:
        layers = ", ".join(str(l) for l in range(1, network.depth + 1) if network.norm(l) == "batchnorm")
        raise InputError(f"{in_data}X is a batch of one (N = 1), but layer {layers} has batch norm: its variance "
                         f"over one sample is 0, so x̂ = 0 for every input and no gradient reaches the layer; "
                         f"give at least 2 rows")
    check_memory(network, X.shape[0], source)  # the given batch: its activations are not allocated yet
    Y = _targets(Y, network, X.shape[0], in_data, column)
    claims = _claims(claimed, network, X.shape[0], Y, f"{source}: [claimed] " if from_file else f"{source}: claimed ",
                     convention)
    if network.has_norm and (learning_rate is not None or optimizer is not None):
        raise InputError(f"{source}: an optimiser step ([sgd], [optimizer]) is not supported on a network with a "
                         f"norm ({'/'.join(network.norms)}) yet: its gammal_next, betal_next are not named; "
                         f"leave the step out and judge the gradients")
    if optimizer is not None:
        if learning_rate is not None:
            raise InputError(f"{source}: give [sgd] or [optimizer], not both")
        optimizer = _optimizer_state(optimizer, network, f"{source}: [state] " if from_file else f"{source}: state ",
                                     convention)
    return Case(network, full, X, Y, title, int(seed), claims, learning_rate, source,
                tuple(name for name in shapes if name not in params), optimizer, convention)


def _optimizer_state(step: OptimizerStep, network: Network, where: str,
                     convention: Convention = ROW) -> OptimizerStep:
    """``step`` with its state arrays checked as parameters are (dtype, finite, the parameter's shape),
    in the engine's form."""
    shapes = network.parameter_shapes()
    state = {}
    for name, value in step.state.items():
        given = _float_array(value, network, name, where)
        a = np.ascontiguousarray(to_engine(convention, name, given))
        _expect_shape(a, shapes[name[1:]], name, where, convention, given.shape)
        if name.startswith("v") and step.rule in ("rmsprop", "adam") and (a < 0).any():
            raise InputError(f"{where}{name} is a mean of squares and cannot be negative{_first_bad(a < 0)}")
        state[name] = a
    return dataclasses.replace(step, state=state)


def _claims(claimed: Mapping[str, Any] | None, network: Network, N: int, Y: np.ndarray,
            where: str, convention: Convention = ROW) -> dict[str, Claim]:
    """``claimed`` with every plain array made an exact :class:`Claim` (checked first); a Claim stays as it is."""
    out: dict[str, Claim] = {}
    if not claimed:
        return out
    known = network.names() + network.extra_names()
    shapes = network.tensor_shapes(N)
    if Y.ndim == 1:
        shapes["Y"] = Y.shape
    for name, value in dict(claimed).items():
        if isinstance(value, Claim):
            out[name] = value
            continue
        if not isinstance(name, str) or name not in known:
            raise InputError(f"{where}has unknown tensor name {_short(name)}; this network's names are "
                             f"{', '.join(known)}")
        if value is None:
            raise InputError(f"{where}{name} is None, not an array of numbers")
        a = _float_array(value, network, name, where)
        if np.ndim(value) == 0:
            a = a.reshape(())  # a scalar (L) stays one
        check_claim_shape(convention, name, a.shape, shapes[name], where)
        out[name] = Claim(a, np.zeros(a.shape))
    return out


def check_claim_shape(convention: Convention, name: str, shape: tuple[int, ...], engine_shape: tuple[int, ...],
                      where: str) -> None:
    """A claim is written in one of the shapes its tensor is written in (:func:`.convention.accepted_shapes`),
    or as a 2-D tensor in the other layout, which is kept: ``validate`` names the transposed layout."""
    accepted = accepted_shapes(convention, name, engine_shape)
    if tuple(shape) in accepted or (len(shape) == 2 and tuple(shape) == accepted[0][::-1]):
        return
    raise InputError(f"{where}{name} has shape {tuple(int(s) for s in shape)}, expected "
                     f"{shape_text(convention, name, engine_shape)}")


def cast_arrays(case: Case, dtype) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """``(params, X, Y, T)`` of ``case`` in ``dtype``; integer class labels stay labels.

    Widening (float32 to float64, float64 to long double) is exact: the numbers
    stay the same, only the arithmetic done on them becomes wider.
    """
    dt = np.dtype(dtype)
    params = {k: v.astype(dt) for k, v in case.params.items()}
    Y = case.Y.astype(dt) if case.Y.ndim == 2 else case.Y
    return params, case.X.astype(dt), Y, case.T.astype(dt)


def as_float64(case: Case) -> Case:
    """The same case in float64: the same numbers (float32 widens exactly), float64 arithmetic."""
    if case.network.dtype == "float64":
        return case
    net = case.network
    net64 = dataclasses.replace(net, dtype="float64")
    params, X, Y, _ = cast_arrays(case, np.float64)
    optimizer = case.optimizer
    if optimizer is not None:
        optimizer = dataclasses.replace(optimizer, state={k: v.astype(np.float64) for k, v in optimizer.state.items()})
    return dataclasses.replace(make_case(net64, params, X, Y, seed=case.seed, title=case.title,
                                         learning_rate=case.learning_rate, source=case.source, optimizer=optimizer),
                               convention=case.convention)


def random_parameters(network: Network, seed: int) -> dict[str, np.ndarray]:
    """W_l ~ N(0, 1/n_{l-1}) and b_l ~ ±U(0.05, 0.5), from stream 0 of ``seed``; a norm's gamma_l ~ U(0.5, 1.5)
    and beta_l ~ ±U(0.05, 0.5) from stream 5 (make_case uses 1 and 0 instead when other parameters are given)."""
    rng = np.random.default_rng([seed, 0])
    out = {}
    for l in range(1, network.depth + 1):
        n_in, n_out = network.sizes[l - 1], network.sizes[l]
        out[f"W{l}"] = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(network.np_dtype)
        b = rng.uniform(0.05, 0.5, n_out) * rng.choice([-1.0, 1.0], n_out)
        out[f"b{l}"] = b.astype(network.np_dtype)
    norm_rng = np.random.default_rng([seed, 5])  # its own stream: a norm changes no other draw
    for l in range(1, network.depth + 1):
        if network.normed(l):
            n = network.sizes[l]
            out[f"gamma{l}"] = norm_rng.uniform(0.5, 1.5, n).astype(network.np_dtype)
            out[f"beta{l}"] = (norm_rng.uniform(0.05, 0.5, n) * norm_rng.choice([-1.0, 1.0], n)).astype(
                network.np_dtype)
    return out


def random_data(network: Network, seed: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """X ~ N(0, 1) with ``batch`` rows, and targets that suit the loss, from stream 1 of ``seed``."""
    _check_batch(batch, "<options>")
    rng = np.random.default_rng([seed, 1])
    dt = network.np_dtype
    K = network.sizes[-1]
    X = rng.standard_normal((batch, network.sizes[0])).astype(dt)
    if network.loss == "softmax_cross_entropy":
        Y = rng.integers(0, K, batch)
    elif network.loss == "bce":
        Y = rng.integers(0, 2, (batch, K)).astype(dt)
    else:
        Y = (0.5 * rng.standard_normal((batch, K))).astype(dt)
    return X, Y


def _check_batch(batch: Any, source: str) -> None:
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise InputError(
            f"{source}: batch must be a positive integer, got {_short(batch)}"
            + ("; an empty batch has no mean and every gradient would be 0" if batch == 0 else "")
        )
    if batch > MAX_DIMENSION:
        raise InputError(f"{source}: batch is {_short(batch)}, beyond the largest array dimension (2**63 - 1)")


#: The largest width or batch: an array dimension is a signed 64-bit integer.
MAX_DIMENSION = 2**63 - 1

#: Copies of every activation element (one per sample and unit of every layer, the input included)
#: and of every weight and bias that a run holds at its peak, fitted on the peak RSS (``/usr/bin/time -v``)
#: of ``manual-backprop check --against REFS --activations relu,softmax --loss softmax_cross_entropy``
#: in float64. Activations, ``--sizes 64,64,10 --batch B`` (138 units: B * 1104 bytes):
#:
#:     --against       B = 1     B = 10**4   B = 10**5   copies (slope from 10**4 to 10**5)
#:     fd              44 MiB    169 MiB     1329 MiB    12.2
#:     torch,jax,fd    522 MiB   700 MiB     2183 MiB    15.6
#:
#: Weights, ``--batch 1 --sizes n,n,10`` (n = 2000: 4.02e6 parameters, 32 MB; n = 4000: 1.60e7, 128 MB):
#:
#:     --against       n = 2000  n = 4000    copies (slope)
#:     fd              287 MiB   1036 MiB    8.2
#:     torch,jax,fd    893 MiB   1898 MiB    11.0 (12.1 counted from the 522 MiB of B = 1)
#:
#: 16 and 12 cover every reference at once. The frameworks' own ~0.5 GiB is not counted: a run
#: against fd alone does without it. (``--per-sample`` adds N copies of every weight: not counted.)
_PER_ACTIVATION, _PER_WEIGHT = 16, 12


def check_memory(network: Network, N: int, source: str, rows: str = "batch") -> None:
    """Refuse a network that cannot fit in the memory this process may use, before allocating any of it.

    ``N`` rows of data, called ``rows`` in the message (``batch 64``, ``samples 600``).

    (With Linux's memory overcommit an impossible allocation may succeed and the
    process be killed later; a clear error up front is kinder.)
    """
    sizes = network.sizes
    shown = "-".join(map(_short, sizes))
    too_wide = next((i for i, n in enumerate(sizes) if n > MAX_DIMENSION), None)
    if too_wide is not None:
        raise InputError(f"{source}: network {shown}: width {_short(sizes[too_wide])} of layer {too_wide} is "
                         f"beyond the largest array dimension (2**63 - 1)")
    weights = sum(a * b + b for a, b in zip(sizes, sizes[1:]))
    need = network.np_dtype.itemsize * (_PER_WEIGHT * weights + _PER_ACTIVATION * int(N) * sum(sizes))
    available = available_memory()
    if available is not None and need > available:
        raise InputError(
            f"{source}: network {shown} with {rows} {_short(N)} needs about {_gib(need)} of memory, "
            f"more than the {_gib(available)} this process may use"
        )


def available_memory() -> int | None:
    """Bytes this process may still allocate: the least of the cgroup's memory limit and MemAvailable.

    Physical RAM when neither can be read (not Linux); None when nothing is known.
    """
    known = [n for n in (_cgroup_limit(), _meminfo_available()) if n is not None]
    if known:
        return min(known)
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return None


#: cgroup v2's memory.max ("max": no limit) at the root of the mount and in this process's own group.
_CGROUP = "/sys/fs/cgroup"
_CGROUP_V1_LIMIT = "/sys/fs/cgroup/memory/memory.limit_in_bytes"  # about 2**63 when there is no limit


def _cgroup_limit() -> int | None:
    """The smallest memory limit of the cgroups this process is in (v2, or v1), or None for no limit."""
    files = [f"{_CGROUP}/memory.max", _CGROUP_V1_LIMIT]
    own = _read("/proc/self/cgroup")
    for line in (own or "").splitlines():
        if line.startswith("0::/"):  # cgroup v2: the limit of this group or of any group above it
            parts = [p for p in line[4:].strip().split("/") if p]
            files += [f"{_CGROUP}/{'/'.join(parts[:k])}/memory.max" for k in range(len(parts), 0, -1)]
    limits = []
    for name in files:
        text = (_read(name) or "").strip()
        if text.isdigit() and int(text) < 2**60:
            limits.append(int(text))
    return min(limits, default=None)


def _meminfo_available() -> int | None:
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemAvailable:"):
            fields = line.split()
            if len(fields) >= 2 and fields[1].isdigit():
                return int(fields[1]) * (1024 if fields[-1] == "kB" else 1)
    return None


def _read(name: str) -> str | None:
    try:
        with open(name, encoding="ascii", errors="replace") as f:
            return f.read(1 << 16)
    except OSError:
        return None


def _gib(n: float) -> str:
    """``0.125 GiB``, ``23.5 GiB``, ``1190 GiB``, ``3.3e+12 GiB``."""
    x = n / 2**30
    return f"{x:.0f} GiB" if 1000 <= x < 1e7 else f"{x:.3g} GiB"


def _short(n: Any) -> str:
    """An integer as written, or ``1.000e+400`` for a long one (Python refuses to write 5000 digits)."""
    if isinstance(n, (int, np.integer)) and not isinstance(n, bool) and abs(int(n)) >= 10**15:
        return f"{Decimal(int(n)):.3e}"
    return repr(n)


def _shape(a: np.ndarray) -> tuple[int, ...]:
    return tuple(int(s) for s in a.shape)


def _expect_shape(a: np.ndarray, shape: tuple[int, ...], name: str, where: str,
                  convention: Convention = ROW, given: tuple[int, ...] | None = None) -> None:
    """``a`` (in the engine's form) has the engine's ``shape``; the message speaks of the shape the user
    wrote (``given``) and the one their layout expects."""
    if a.shape != shape:
        given = _shape(a) if given is None else tuple(int(s) for s in given)
        column = convention.layout == "column"
        hint = ""
        if name.startswith("b") and len(given) == 2:
            hint = f"; write a bias as a flat list or a {'column (n, 1)' if column else 'row (1, n)'}"
        if name.startswith("W") and a.ndim == 2:
            l = int(name[1:])
            if a.shape == shape[::-1]:
                hint = (f" (written transposed? in the column layout W{l} is (units, inputs): one row per unit of "
                        f"layer {l})" if column else
                        f" (written transposed? W{l} is (inputs, units): one row per unit of layer {l - 1})")
            elif a.shape[1] == shape[1]:
                hint = (f" (its {'columns' if column else 'rows'} must match the width {shape[0]} of layer {l - 1}: "
                        f"the widths do not chain)")
        raise InputError(f"{where}{name} has shape {given}, expected {shape_text(convention, name, shape)}{hint}")


def _first_bad(mask: np.ndarray) -> str:
    """`` at index [i, j]`` of the first True element (nothing for a scalar)."""
    idx = [int(i) for i in np.argwhere(mask)[0]]
    return f" at index {idx}" if idx else ""


def _rectangular(value: Any, name: str, where: str) -> np.ndarray:
    """``np.asarray(value)``, or an InputError when nested lists do not make a rectangular array."""
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value)
    except (ValueError, TypeError, OverflowError):
        raise InputError(f"{where}{name} is not a rectangular array of numbers (rows of different lengths?)") from None


def _float_array(value: Any, network: Network, name: str, where: str) -> np.ndarray:
    """A float array of the network's dtype, or an InputError that says why not."""
    a = _rectangular(value, name, where)
    if a.dtype == object and a.size and all(type(x) in (int, float) for x in a.flat) \
            and any(type(x) is int for x in a.flat):  # integers too large for int64
        raise InputError(f"{where}{name} holds integers where floats are needed (write 1.0, not 1)")
    if a.dtype == object or a.dtype.kind in "USV":
        raise InputError(f"{where}{name} is not a rectangular array of numbers")
    if a.dtype.kind == "b":
        raise InputError(f"{where}{name} holds booleans where floats are needed")
    if a.dtype.kind in "iu":
        raise InputError(
            f"{where}{name} holds integers where floats are needed (write 1.0, not 1)"
        )
    if a.dtype.kind == "c":
        raise InputError(f"{where}{name} holds complex numbers where real floats are needed")
    if a.dtype.kind != "f":
        raise InputError(f"{where}{name} has dtype {a.dtype}, where {network.dtype} is needed")
    if isinstance(value, np.ndarray) and a.dtype != network.np_dtype:
        raise InputError(
            f"{where}{name} is {a.dtype} but the network is {network.dtype}; "
            f"cast it explicitly (no silent conversion)"
        )
    bad = ~np.isfinite(a)
    if bad.any():
        kind = "NaN" if np.isnan(a[bad]).any() else "Inf"
        raise InputError(f"{where}{name} has {kind}{_first_bad(bad)}")
    with np.errstate(over="ignore"):  # a value beyond the dtype's range is reported below, not warned about
        cast = np.ascontiguousarray(a, dtype=network.np_dtype)
    bad = ~np.isfinite(cast)
    if bad.any():
        raise InputError(
            f"{where}{name} has {float(a[tuple(np.argwhere(bad)[0])])!r}{_first_bad(bad)}, beyond the largest "
            f"{network.dtype} ({float(np.finfo(network.np_dtype).max):.4g})"
        )
    if cast.dtype != a.dtype:  # a non-zero value that the cast makes exactly 0 (a subnormal that stays is kept)
        lost = (cast == 0) & (a != 0)
        if lost.any():
            raise InputError(
                f"{where}{name} has {float(a[tuple(np.argwhere(lost)[0])])!r}{_first_bad(lost)}, below the "
                f"smallest {network.dtype} ({float(np.finfo(network.np_dtype).smallest_subnormal):.4g}); "
                f"it would become 0"
            )
    return cast


def _targets(Y: Any, network: Network, N: int, where: str, column: bool = False) -> np.ndarray:
    K = network.sizes[-1]
    a = _rectangular(Y, "Y", where)
    labels = network.loss == "softmax_cross_entropy" and a.ndim == 1
    if labels and a.dtype == object and a.size and all(type(y) is int for y in a):
        i = next(i for i, y in enumerate(a) if not 0 <= y < K)  # only a label past int64 makes an object array
        raise InputError(f"{where}Y has class label {a[i]} at index [{i}], but there are only {K} classes (0..{K - 1})")
    if labels and a.dtype.kind == "b":
        raise InputError(f"{where}Y holds booleans; class labels must be integers 0..{K - 1}")
    if labels and a.dtype.kind in "iu":
        if a.shape[0] != N:
            raise InputError(f"{where}Y has {a.shape[0]} labels but X has {N} rows")
        if (a < 0).any():
            raise InputError(f"{where}Y has a negative class label {int(a[a < 0][0])}{_first_bad(a < 0)}")
        if (a >= K).any():
            raise InputError(
                f"{where}Y has class label {int(a[a >= K][0])}{_first_bad(a >= K)}, "
                f"but there are only {K} classes (0..{K - 1})"
            )
        return np.ascontiguousarray(a, dtype=np.int64)
    if a.dtype.kind in "iu" and network.loss == "softmax_cross_entropy":
        raise InputError(f"{where}Y holds integers; class labels must be a flat list of N integers, one per row")
    a = _float_array(Y, network, "Y", where)
    given = _shape(a)
    if column and a.ndim == 2:
        a = np.ascontiguousarray(a.T)
    if a.shape != (N, K):
        extra = ""
        if a.shape == (N,) and K == 1:
            extra = (" (a flat (N,) target would broadcast against the (1, N) output; write one row of N targets)"
                     if column else
                     " (a flat (N,) target would broadcast against the (N, 1) output; write one row per sample)")
        elif network.loss == "softmax_cross_entropy" and a.ndim == 1:
            extra = " (class labels must be integers)"
        raise InputError(f"{where}Y has shape {given}, expected {(K, N) if column else (N, K)}{extra}")
    if network.loss == "bce":
        bad = (a < 0) | (a > 1)
        if bad.any():
            raise InputError(
                f"{where}Y has target {float(a[bad][0])!r}{_first_bad(bad)}; bce targets must lie in [0, 1]"
            )
    if network.loss == "softmax_cross_entropy":
        bad = a < 0
        if bad.any():
            raise InputError(f"{where}Y has negative probability{_first_bad(bad)}")
        sums = a.astype(np.float64).sum(axis=1)
        # Input validation, not a comparison: K entries, each rounded once to the dtype, may miss 1 by K ulps.
        off = np.abs(sums - 1) > 8 * K * np.finfo(a.dtype).eps
        if off.any():
            i = int(np.argwhere(off)[0][0])
            raise InputError(
                f"{where}Y row {i} sums to {float(sums[i])!r}; softmax_cross_entropy targets must be "
                f"one-hot or probability rows summing to 1, or integer labels"
            )
    return a
