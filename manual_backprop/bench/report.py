"""Turn a pytest-benchmark JSON file (from ``benchmarks/``) into a report a person can read.

:func:`load` reads and checks the file; :func:`build` makes a :class:`Report`:
the medians of the whole forward + backward per network, dtype, batch and
implementation, the ratios the project's targets are stated in, the kernels,
the peak memory, and the environment the run recorded. :func:`markdown` and
:func:`plot` render it; :func:`compare` sets it against an older run.

Ratios are taken within one run (never across runs): this machine's absolute
times drift by tens of percent between runs, the ratios much less. A run of
``benchmarks/`` (and ``manual-backprop bench``) times the implementations of a
grid point interleaved (:mod:`~manual_backprop.bench.timer`) and records each
one's time per round (``extra_info.impls[impl].times``); a ratio is then the
median of the per-round ratios, with their spread, and a target is missed only
when the whole spread misses it. A benchmark of one implementation alone
(``extra_info.impl``, as older runs wrote) gives a ratio of medians, spread 0.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import InputError
from ..files import save_figure_atomically
from .timer import Spread, per_round_ratio

IMPLS = ("user", "numpy_fast", "numpy_trace", "numpy_loop", "torch", "jax", "floor_numpy", "floor_torch")
LABELS = {
    "user": "your code",
    "numpy_fast": "fast engine", "numpy_trace": "checking engine", "numpy_loop": "per-sample loop",
    "torch": "torch eager", "jax": "jax.jit", "floor_numpy": "floor NumPy", "floor_torch": "floor torch",
}
FLOORS = ("floor_numpy", "floor_torch")
# (ratio name, numerator, denominator(s)): the fastest floor of a round is the floor.
RATIOS = (
    ("yours/fast", "user", "numpy_fast"), ("yours/floor", "user", FLOORS), ("yours/torch", "user", "torch"),
    ("yours/jax", "user", "jax"),
    ("fast/floor", "numpy_fast", FLOORS), ("fast/torch", "numpy_fast", "torch"), ("fast/jax", "numpy_fast", "jax"),
    ("loop/fast", "numpy_loop", "numpy_fast"), ("trace/fast", "numpy_trace", "numpy_fast"),
)
# A point sits "on the matrix-multiply floor" (where the targets allow 3%): batch >= 512 on a wide network.
WIDE = ("784-256-256-10", "1024x4")


@dataclass
class Target:
    name: str
    point: str
    spread: Spread
    limit: float
    kind: str  # "<=" or ">="

    @property
    def value(self) -> float:
        return self.spread.median

    @property
    def verdict(self) -> str:
        """``holds``, ``missed`` (the whole spread misses the limit) or ``noise`` (the spread straddles it)."""
        return self.spread.verdict(self.limit, self.kind)

    @property
    def ok(self) -> bool:
        return self.verdict != "missed"


@dataclass
class Report:
    source: str
    environment: dict[str, Any]
    # (network, dtype, batch) -> impl -> seconds per call (the loop scaled to the whole batch): the median
    times: dict[tuple[str, str, int], dict[str, float]] = field(default_factory=dict)
    # the same, per interleaved round (a point timed side by side); absent for one-implementation benchmarks
    rounds: dict[tuple[str, str, int], dict[str, list[float]]] = field(default_factory=dict)
    compile_s: dict[tuple[str, str, int], float] = field(default_factory=dict)
    kernels: dict[str, dict[str, float]] = field(default_factory=dict)
    kernel_rounds: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    kernel_shape: str = ""
    memory: dict[str, float] = field(default_factory=dict)
    memory_case: str = ""
    by_name: dict[str, float] = field(default_factory=dict)
    # The project's targets (on the fast engine) apply: a run of benchmarks/; not a bench of the user's code.
    project_targets: bool = True

    def ratios(self, key: tuple[str, str, int]) -> dict[str, Spread]:
        """Each ratio of :data:`RATIOS` the point has: per round when both sides were timed side by side."""
        t, rounds = self.times[key], self.rounds.get(key, {})
        out: dict[str, Spread] = {}
        for name, num, den in RATIOS:
            dens = [d for d in ([den] if isinstance(den, str) else den) if d in t]
            if num not in t or not dens:
                continue
            if all(i in rounds for i in (num, *dens)):
                spread = per_round_ratio(rounds, num, dens)
                if spread is not None:
                    out[name] = spread
                    continue
            value = t[num] / min(t[d] for d in dens)
            out[name] = Spread(value, value, value)
        return out

    def targets(self) -> list[Target]:
        """The issue's targets, checked at every grid point the run has (see :meth:`limit`)."""
        found: list[Target] = []
        for key in sorted(self.times, key=_order):
            network, dtype, batch = key
            for name, spread in self.ratios(key).items():
                target = self.limit(key, name)
                if target is not None:
                    found.append(Target(name, f"{network} {dtype} B={batch}", spread, *target))
        if "numpy_fast" in self.memory and self.memory.get("torch", 0.0) > 0:
            m = self.memory["numpy_fast"] / self.memory["torch"]
            found.append(Target("memory fast/torch", self.memory_case, Spread(m, m, m), 1.0, "<="))
        return found

    def limit(self, key: tuple[str, str, int], name: str) -> tuple[float, str] | None:
        """The target on ratio ``name`` at grid point ``key``, as ``(limit, kind)``, or None (:func:`target`)."""
        return target(key[0], key[2], name) if self.project_targets else None


def target(network: str, batch: int, name: str) -> tuple[float, str] | None:
    """The project's target on ratio ``name`` at a grid point of ``network`` and ``batch``: ``(limit, kind)``.

    fast/torch and fast/jax <= 1 everywhere (<= 1.03 on the matrix-multiply floor: a wide network at
    batch >= 512); fast/floor <= 1.10 on a wide network at batch >= 64; loop/fast >= 100 at 2-3-1 batch 4096.
    """
    wide = network in WIDE
    if name in ("fast/torch", "fast/jax"):
        return (1.03 if wide and batch >= 512 else 1.0), "<="
    if name == "fast/floor" and wide and batch >= 64:
        return 1.10, "<="
    if name == "loop/fast" and network == "2-3-1" and batch == 4096:
        return 100.0, ">="
    return None


def point_verdicts(network: str, dtype: str, batch: int, impls: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """The verdict on each of the project's targets at one grid point, from its implementations' entries
    as ``extra_info["impls"]`` holds them (``impl -> {"times": [s per call, one per round], "scale": ...}``)."""
    key = (network, dtype, batch)
    rounds = {impl: round_times(entry) for impl, entry in impls.items()}
    report = Report("", {}, times={key: {i: _median(t) for i, t in rounds.items()}}, rounds={key: rounds})
    return {t.name: t.verdict for t in report.targets()}


def round_times(entry: Mapping[str, Any]) -> list[float]:
    """An implementation's seconds per call in each round, the per-sample loop's scaled to the whole batch."""
    return [float(t) * float(entry.get("scale", 1.0)) for t in entry["times"]]


def load(path: str | Path) -> dict[str, Any]:
    """The parsed file, or an :class:`InputError` saying why it is not a pytest-benchmark JSON file."""
    p = Path(path)
    try:
        if p.is_dir():
            raise InputError(f"{p}: a directory, not a pytest-benchmark JSON file")
        raw = p.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{p}: no such file") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot read ({exc.strerror or exc})") from None
    if not raw.strip():
        raise InputError(f"{p}: the file is empty; make one with `pytest benchmarks --benchmark-json={p.name}`")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}), "
                         f"so not a pytest-benchmark JSON file") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise InputError(f"{p}: not a pytest-benchmark JSON file (nested too deeply)") from None
    check(data, str(p))
    return data


KINDS = ("network", "kernel", "memory")
# What each kind of benchmark must carry in extra_info (benchmarks/ writes them; the report reads them).
REQUIRED = {
    "network": ("network", "dtype", "batch"),
    "kernel": ("kernel",),
    "memory": ("impl", "network", "dtype", "batch", "peak_extra_mib"),
}
# ... and one of these: one implementation's benchmark, or a group timed side by side (per-round times).
ONE_OF = {"network": ("impl", "impls"), "kernel": ("variant", "variants")}


def _type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or None when it is not a finite JSON number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        x = float(value)
    except OverflowError:
        return None
    return x if math.isfinite(x) else None


def _key(b: dict[str, Any]) -> str:
    """The name a benchmark is matched by across runs."""
    return b.get("fullname") or b.get("name") or ""


def check(data: Any, source: str = "<data>") -> None:
    """Raise :class:`InputError` (one line: the file, the benchmark, the key) unless ``data`` can be reported.

    The checks are what :func:`build`, :func:`markdown` and :func:`compare` rely on: a list of benchmarks,
    each an object with a unique name and a positive finite ``stats.median``, and, for the kinds
    ``benchmarks/`` writes (network, kernel, memory), the ``extra_info`` keys the report reads, of the
    right types. Benchmarks of other kinds (not from ``benchmarks/``) only take part in :func:`compare`.
    """
    if not isinstance(data, dict):
        raise InputError(f"{source}: not a pytest-benchmark JSON file (the top level is {_type(data)}, "
                         f"not an object)")
    if "benchmarks" not in data:
        raise InputError(f"{source}: not a pytest-benchmark JSON file (no 'benchmarks' list); "
                         f"make one with `pytest benchmarks --benchmark-json={Path(source).name}`")
    if not isinstance(data["benchmarks"], list):
        raise InputError(f"{source}: not a pytest-benchmark JSON file ('benchmarks' is "
                         f"{_type(data['benchmarks'])}, not a list)")
    seen: dict[str, int] = {}
    for i, b in enumerate(data["benchmarks"]):
        if not isinstance(b, dict):
            raise InputError(f"{source}: benchmark #{i} is {_type(b)}, not an object")
        label = b.get("name")
        where = f"{source}: benchmark #{i}" + (f" {label!r}" if isinstance(label, str) and label else "")
        for key in ("name", "fullname"):
            if key in b and not isinstance(b[key], str):
                raise InputError(f"{where}: {key} is {_type(b[key])}, not a string")
        key = _key(b)
        if not key:
            raise InputError(f"{where}: no name or fullname")
        if key in seen:
            raise InputError(f"{where}: {key!r} appears twice (also benchmark #{seen[key]})")
        seen[key] = i
        stats = b.get("stats")
        if not isinstance(stats, dict) or "median" not in stats:
            raise InputError(f"{where}: no stats.median; was the run made with --benchmark-disable?")
        median = _number(stats["median"])
        if median is None or median <= 0:
            raise InputError(f"{where}: stats.median is {stats['median']!r}, "
                             f"not a positive finite number of seconds")
        info = b.get("extra_info")
        if info is None:
            continue
        if not isinstance(info, dict):
            raise InputError(f"{where}: extra_info is {_type(info)}, not an object")
        kind = info.get("kind")
        if kind not in KINDS:
            continue
        for name in REQUIRED[kind]:
            if name not in info:
                raise InputError(f"{where}: extra_info.{name} is missing (a {kind} benchmark needs "
                                 f"{', '.join(REQUIRED[kind])})")
        if kind in ONE_OF and not any(k in info for k in ONE_OF[kind]):
            one, group = ONE_OF[kind]
            raise InputError(f"{where}: extra_info.{one} is missing (a {kind} benchmark needs {one}, or "
                             f"{group} timed side by side)")
        for group_key in ("impls", "variants"):
            if group_key in info:
                _check_group(info[group_key], f"{where}: extra_info.{group_key}",
                             IMPLS if group_key == "impls" else None)
        for name in ("network", "dtype", "kernel", "variant", "shape"):
            if name in info and (not isinstance(info[name], str) or (name != "shape" and not info[name])):
                raise InputError(f"{where}: extra_info.{name} is {info[name]!r}, not a name")
        if "impl" in info and info["impl"] not in IMPLS:
            raise InputError(f"{where}: extra_info.impl is {info['impl']!r}, not one of {', '.join(IMPLS)}")
        if "batch" in info:
            batch = info["batch"]
            if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
                raise InputError(f"{where}: extra_info.batch is {batch!r}, not a positive whole number")
        for name, strict in (("scale", True), ("jax_first_call_s", False), ("peak_extra_mib", False)):
            if name in info:
                x = _number(info[name])
                if x is None or x < 0 or (strict and x == 0):
                    raise InputError(f"{where}: extra_info.{name} is {info[name]!r}, not a "
                                     f"{'positive' if strict else 'non-negative'} finite number")
        if not math.isfinite(median * float(info.get("scale", 1.0))):
            raise InputError(f"{where}: stats.median times extra_info.scale is not a finite number")


def _check_group(group: Any, where: str, names: tuple[str, ...] | None) -> None:
    """``{name: {"times": [seconds per call, one per round], ...}}``, every list as long, every time > 0."""
    if not isinstance(group, dict) or not group:
        raise InputError(f"{where} is {_type(group)}, not an object of implementations and their times")
    lengths = set()
    for name, entry in group.items():
        if names is not None and name not in names:
            raise InputError(f"{where}: {name!r} is not one of {', '.join(names)}")
        times = entry.get("times") if isinstance(entry, dict) else None
        if not isinstance(times, list) or not times:
            raise InputError(f"{where}.{name}.times is missing or not a list of seconds")
        for t in times:
            x = _number(t)
            if x is None or x <= 0:
                raise InputError(f"{where}.{name}.times holds {t!r}, not a positive finite number of seconds")
        lengths.add(len(times))
        for key, strict in (("scale", True), ("jax_first_call_s", False)):
            if key in entry:
                x = _number(entry[key])
                if x is None or x < 0 or (strict and x == 0):
                    raise InputError(f"{where}.{name}.{key} is {entry[key]!r}, not a "
                                     f"{'positive' if strict else 'non-negative'} finite number")
                if strict and not all(math.isfinite(float(t) * x) for t in times):
                    raise InputError(f"{where}.{name}: times × scale is not a finite number")
    if len(lengths) != 1:
        raise InputError(f"{where}: the implementations were timed for different numbers of rounds "
                         f"({', '.join(map(str, sorted(lengths)))}); side-by-side rounds must match")


def _median(values: list[float]) -> float:
    import statistics

    return statistics.median(values)


def build(data: dict[str, Any], source: str = "") -> Report:
    """The report of one run. :func:`check` comes first: bad data is an :class:`InputError`, never a crash."""
    check(data, source or "<data>")
    report = Report(source, environment(data))
    for b in data["benchmarks"]:
        info = b.get("extra_info") or {}
        kind = info.get("kind")
        median = float(b["stats"]["median"])
        # ``scale`` is checked for the kinds benchmarks/ writes; other benchmarks compare by their median.
        report.by_name[_key(b)] = median * float(info.get("scale", 1.0)) if kind in KINDS else median
        if kind == "network" and "impls" in info:
            key = (info["network"], info["dtype"], int(info["batch"]))
            for impl, entry in info["impls"].items():
                times = round_times(entry)
                report.rounds.setdefault(key, {})[impl] = times
                report.times.setdefault(key, {})[impl] = report.by_name[f"{_key(b)} {impl}"] = _median(times)
                if "jax_first_call_s" in entry:
                    report.compile_s[key] = max(float(entry["jax_first_call_s"]) - _median(times), 0.0)
            del report.by_name[_key(b)]  # a group's own median is one whole round: compared by its parts
        elif kind == "network":
            key = (info["network"], info["dtype"], int(info["batch"]))
            report.times.setdefault(key, {})[info["impl"]] = median * float(info.get("scale", 1.0))
            if "jax_first_call_s" in info:
                report.compile_s[key] = max(float(info["jax_first_call_s"]) - median, 0.0)
        elif kind == "kernel" and "variants" in info:
            for variant, entry in info["variants"].items():
                times = [float(t) for t in entry["times"]]
                report.kernel_rounds.setdefault(info["kernel"], {})[variant] = times
                report.kernels.setdefault(info["kernel"], {})[variant] = _median(times)
                report.by_name[f"{_key(b)} {variant}"] = _median(times)
            del report.by_name[_key(b)]
            report.kernel_shape = info.get("shape", "")
        elif kind == "kernel":
            report.kernels.setdefault(info["kernel"], {})[info["variant"]] = median
            report.kernel_shape = info.get("shape", "")
        elif kind == "memory":
            report.memory[info["impl"]] = float(info["peak_extra_mib"])
            report.memory_case = f"{info['network']} {info['dtype']} B={info['batch']}"
    return report


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def environment(data: dict[str, Any]) -> dict[str, Any]:
    """Date, versions, BLAS and threads: pytest-benchmark's machine_info and what conftest added.

    Only described, never computed with: a part that is missing or of the wrong type shows as "?".
    """
    mi = _obj(data.get("machine_info"))
    ours = _obj(mi.get("manual_backprop"))
    cpu = _obj(mi.get("cpu"))
    threads = _obj(ours.get("threads"))
    pools = ours.get("blas_pools")
    return {
        "date": str(data.get("datetime", "?")),
        "python": ours.get("python") or mi.get("python_version", "?"),
        "numpy": ours.get("numpy", "?"),
        "torch": ours.get("torch") or "-",
        "jax": ours.get("jax") or "-",
        "blas": ours.get("blas", "?"),
        "torch_blas": ours.get("torch_blas", "?"),
        "cpu": cpu.get("brand_raw") or mi.get("processor") or "?",
        "cpu_count": threads.get("cpu_count") or cpu.get("count", "?"),
        "blas_threads": ", ".join(f"{p.get('internal_api')} {p.get('num_threads')}"
                                  + (f" ({p['architecture']} kernels)" if p.get("architecture") else "")
                                  for p in (pools if isinstance(pools, list) else []) if isinstance(p, dict))
        or "?",
        "openblas_coretype": ours.get("openblas_coretype"),
        "torch_threads": ours.get("torch_threads", "?"),
        "gap_s": ours.get("gap_s", "?"),
        "platform": ours.get("platform") or mi.get("system", "?"),
        "pytest_benchmark": data.get("version", "?"),
    }


def fmt_time(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _order(key: tuple[str, str, int]) -> tuple:
    network, dtype, batch = key
    nets = ["2-3-1", "784-256-256-10", "1024x4"]
    return (nets.index(network) if network in nets else 99, network, dtype != "float32", dtype, batch)


def _cell(spread: Spread | None, target: tuple[float, str] | None = None) -> str:
    """``median (lo–hi)``; ✗ when the whole spread misses the target, ~ when it straddles it."""
    if spread is None:
        return "-"
    text = spread.text()
    if target is None:
        return text
    verdict = spread.verdict(*target)
    return f"**{text}** ✗" if verdict == "missed" else f"{text} ~" if verdict == "noise" else text


def markdown(report: Report, comparison: list[dict[str, Any]] | None = None,
             title: str = "Benchmark report", intro: str | None = None,
             verdict_pairs: list[dict[str, Any]] | None = None) -> str:
    env = report.environment
    interleaved = bool(report.rounds)
    lines = [
        f"# {title}",
        "",
        f"Run {env['date']} on {env['cpu']} ({env['cpu_count']} CPUs), {env['platform']}.",
        f"Python {env['python']}, NumPy {env['numpy']} ({env['blas']}; threads: {env['blas_threads']}), "
        f"torch {env['torch']} ({env['torch_blas']}, {env['torch_threads']} threads), JAX {env['jax']}, "
        f"pytest-benchmark {env['pytest_benchmark']}. Pause between libraries: {env['gap_s']} s."
        + (f" OPENBLAS_CORETYPE={env['openblas_coretype']} was set." if env.get("openblas_coretype") else ""),
        "",
    ]
    if intro:
        lines += [intro, ""]
    lines.append(
        "Median time of one forward + backward (the loss and every dW, db). "
        + ("The implementations of a point were timed side by side, round after round; a ratio is the "
           "median of the per-round ratios, with the median's 98% confidence interval in brackets. "
           if interleaved else "Ratios are within this run. ")
        + ("✗ marks a ratio whose whole interval misses its target, ~ one whose interval straddles it "
           "(fast/torch and fast/jax ≤ 1, ≤ 1.03 at batch ≥ 512 on the wide networks; "
           "fast/floor ≤ 1.10 at batch ≥ 64 on the wide networks (2-3-1 is Python-overhead bound: "
           "its floor is five tiny products); loop/fast ≥ 100 on 2-3-1 at batch 4096). "
           if report.project_targets else "")
        + "floor = the faster of the two floors in each round (the matrix products alone)"
        + ("; the per-sample loop is timed on a capped subset and scaled to the batch." if any(
            "numpy_loop" in t for t in report.times.values()) else "."))
    tables: dict[tuple[str, str], list[tuple[str, str, int]]] = {}
    for key in sorted(report.times, key=_order):
        tables.setdefault(key[:2], []).append(key)
    for (network, dtype), keys in tables.items():
        impls = [i for i in IMPLS if any(i in report.times[k] for k in keys)]
        mine = "user" in impls  # a bench of the user's code shows the user's ratios only
        ratios = [name for name, _, _ in RATIOS if name != "trace/fast" and name.startswith("yours/") == mine
                  and any(name in report.ratios(k) for k in keys)]
        lines += ["", f"## {network}, {dtype}", ""]
        head = ["batch"] + [LABELS[i] for i in impls] + ratios + ["jax compile"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for key in keys:
            t, r = report.times[key], report.ratios(key)
            row = [str(key[2])] + [fmt_time(t.get(i)) for i in impls] + [
                _cell(r.get(name), report.limit(key, name)) for name in ratios
            ] + [fmt_time(report.compile_s.get(key))]
            lines.append("| " + " | ".join(row) + " |")
    if report.kernels:
        lines += ["", f"## Kernels ({report.kernel_shape}, float32)", "",
                  "| rule | way | median | / first way |", "|---|---|---|---|"]
        for group, variants in report.kernels.items():
            rounds = report.kernel_rounds.get(group, {})
            first = next(iter(variants))
            for variant, median in variants.items():
                rel = per_round_ratio(rounds, variant, first) if rounds else \
                    Spread(median / variants[first], median / variants[first], median / variants[first])
                lines.append(f"| {group} | {variant} | {fmt_time(median)} | {_cell(rel)} |")
    if report.memory:
        lines += ["", f"## Peak extra memory, {report.memory_case}", "", "| implementation | MiB |", "|---|---|"]
        for impl in IMPLS:
            if impl in report.memory:
                lines.append(f"| {LABELS[impl]} | {report.memory[impl]:.1f} |")
    targets = report.targets()
    if targets:
        missed = [t for t in targets if t.verdict == "missed"]
        noise = [t for t in targets if t.verdict == "noise"]
        lines += ["", "## Targets", "",
                  f"{len(targets) - len(missed) - len(noise)} of {len(targets)} hold over their whole interval, "
                  f"{len(noise)} within the noise (the interval straddles the limit), {len(missed)} missed."]
        if missed or noise:
            lines += ["", "| target | where | median | interval | verdict |", "|---|---|---|---|---|"]
            for t in missed + noise:
                lines.append(f"| {t.name} {t.kind} {t.limit:g} | {t.point} | {t.value:.3f} | "
                             f"{t.spread.lo:.3f}–{t.spread.hi:.3f} | "
                             f"{'missed' if t.verdict == 'missed' else 'within the noise'} |")
    if comparison is not None:
        regressions = [c for c in comparison if c["regression"]]
        lines += ["", "## Against the older run", "",
                  f"{len(comparison)} benchmarks in both runs, {len(regressions)} slower by more than the threshold."]
        if comparison:
            lines += ["", "| benchmark | old | new | new/old | |", "|---|---|---|---|---|"]
            for c in sorted(comparison, key=lambda c: -c["ratio"]):
                flag = "**regression**" if c["regression"] else ""
                lines.append(f"| {c['name']} | {fmt_time(c['old'])} | {fmt_time(c['new'])} | "
                             f"{c['ratio']:.2f} | {flag} |")
    if verdict_pairs:
        differ = [v for v in verdict_pairs if not v["same"]]
        flipped = [v for v in verdict_pairs if not v["same_ok"]]
        shown = [v for v in verdict_pairs if not (v["same"] and v["new"]["verdict"] == "holds")]
        lines += ["", "## Verdicts against the older run", "",
                  f"{len(verdict_pairs)} target{'s' * (len(verdict_pairs) != 1)} judged in both runs, "
                  f"{len(differ)} with a different verdict, {len(flipped)} missed in one run and not in the other. "
                  f"Every target that did not hold in both, as median (interval): ✗ missed, ~ within the noise."]
        if shown:
            lines += ["", "| target | where | older run | this run |", "|---|---|---|---|"]
            for v in shown:
                name = f"{v['name']} {v['kind']} {v['limit']:g}" + ("" if v["same"] else " **(differ)**")
                lines.append(f"| {name} | {v['where']} | {_verdict_cell(v['old'])} | {_verdict_cell(v['new'])} |")
    return "\n".join(lines) + "\n"


def compare(new: Report, old: Report, threshold: float) -> list[dict[str, Any]]:
    """Benchmarks present in both runs: old and new medians, their ratio, and whether it is a regression.

    A regression is new/old above ``threshold``, which must be a positive finite ratio. Two runs with no
    benchmark in common are an :class:`InputError`: an empty comparison would pass for "no regression".
    """
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and threshold > 0):
        raise InputError(f"--threshold must be a positive finite ratio, got {threshold}")
    out = []
    for name, t_new in new.by_name.items():
        t_old = old.by_name.get(name)
        if t_old is not None:
            ratio = t_new / t_old
            out.append({"name": name, "old": t_old, "new": t_new, "ratio": ratio, "regression": ratio > threshold})
    if not out:
        raise InputError(f"{new.source or 'the new run'} ({len(new.by_name)} benchmarks) and "
                         f"{old.source or 'the old run'} ({len(old.by_name)} benchmarks) share no benchmark: "
                         f"nothing to compare")
    return out


def verdicts(new: Report, old: Report) -> list[dict[str, Any]]:
    """Every target both runs judged, with its verdict in each: ``same`` is whether the two agree, and
    ``same_ok`` whether they agree on missed or not (a target within the noise is not missed).

    This is the check that two runs of the suite repeat ("the same verdict on every target"); a
    target only one run has (a grid point the other left out) is not in the list.
    """
    def cell(t: Target) -> dict[str, Any]:
        return {"value": t.value, "range": [t.spread.lo, t.spread.hi], "verdict": t.verdict}

    before = {(t.name, t.point): t for t in old.targets()}
    out = []
    for t in new.targets():
        o = before.get((t.name, t.point))
        if o is not None:
            out.append({"name": t.name, "where": t.point, "limit": t.limit, "kind": t.kind,
                        "old": cell(o), "new": cell(t), "same": o.verdict == t.verdict, "same_ok": o.ok == t.ok})
    return out


def _verdict_cell(c: dict[str, Any]) -> str:
    """One run's side of :func:`verdicts`: ``median (lo–hi)`` as :meth:`Spread.text` writes it, and its mark."""
    mark = {"missed": " ✗", "noise": " ~"}.get(c["verdict"], "")
    return Spread(c["value"], *c["range"]).text() + mark


def plot(report: Report, path: str | Path) -> Path | None:
    """Log-log time against batch: one panel per network and dtype, one line per implementation.

    Written atomically (see :mod:`manual_backprop.files`); None, and no file, when the run has no networks.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict[tuple[str, str], list[tuple[str, str, int]]] = {}
    for key in sorted(report.times, key=_order):
        panels.setdefault(key[:2], []).append(key)
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False)
    try:
        styles = {"user": "D-", "numpy_fast": "o-", "numpy_trace": "s--", "numpy_loop": "x:", "torch": "^-", "jax": "v-",
                  "floor_numpy": "k-", "floor_torch": "k--"}
        for ax, ((network, dtype), keys) in zip(axes[0], panels.items()):
            for impl in IMPLS:
                pts = [(k[2], report.times[k][impl]) for k in keys if impl in report.times[k]]
                if pts:
                    xs, ys = zip(*pts)
                    ax.plot(xs, ys, styles.get(impl, "-"), label=LABELS[impl], lw=1.2, ms=4)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(f"{network}, {dtype}", fontsize=10)
            ax.set_xlabel("batch size")
            ax.grid(True, which="major", alpha=0.3)
        axes[0][0].set_ylabel("seconds per forward + backward")
        axes[0][-1].legend(fontsize=7, loc="upper left")
        fig.suptitle(f"manual_backprop benchmarks, {report.environment['date'][:10]}", fontsize=10)
        fig.tight_layout()
        return save_figure_atomically(fig, path, dpi=110)
    finally:
        plt.close(fig)


def summary(report: Report, comparison: list[dict[str, Any]] | None,
            verdict_pairs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The machine-readable form (``--json``)."""
    rows = []
    for key in sorted(report.times, key=_order):
        rows.append({"network": key[0], "dtype": key[1], "batch": key[2],
                     "median_s": report.times[key],
                     "ratios": {n: r.median for n, r in report.ratios(key).items()},
                     "ratio_ranges": {n: [r.lo, r.hi] for n, r in report.ratios(key).items()},
                     "rounds": len(next(iter(report.rounds[key].values()))) if key in report.rounds else 1,
                     "jax_compile_s": report.compile_s.get(key)})
    targets = report.targets()
    out: dict[str, Any] = {
        "ok": not any(c["regression"] for c in comparison or []),  # as the exit code: 1 on a regression
        "targets_ok": all(t.ok for t in targets),
        "environment": report.environment,
        "networks": rows,
        "kernels": report.kernels,
        "memory_mib": report.memory,
        "targets": [{"name": t.name, "where": t.point, "value": t.value, "range": [t.spread.lo, t.spread.hi],
                     "limit": t.limit, "kind": t.kind, "verdict": t.verdict, "ok": t.ok} for t in targets],
    }
    if comparison is not None:
        out["comparison"] = comparison
    if verdict_pairs is not None:
        out["verdicts_against_older"] = verdict_pairs
        out["verdicts_differ"] = sum(not v["same"] for v in verdict_pairs)
        out["verdicts_missed_in_one"] = sum(not v["same_ok"] for v in verdict_pairs)
    return out
