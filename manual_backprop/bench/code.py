"""``manual-backprop bench --code FILE.py:NAME``: the user's forward + backward on the benchmarks' bench.

At each batch size, on the same network, parameters and data:

1. every implementation is built and called once: the user's code
   (:func:`~manual_backprop.bench.impls.build_user`), the fast engine, torch
   eager, ``jax.jit`` and the two matrix-multiply floors;
2. each result is judged against the checking engine by the project's
   comparator (outside any timed region); a user result that disagrees stops
   the bench there: timing a wrong implementation would mean nothing;
3. the implementations are timed side by side in interleaved rounds
   (:class:`~manual_backprop.bench.timer.Interleaved`), with the pause between
   libraries that the benchmarks use.

The run is written as a pytest-benchmark JSON document of the benchmarks'
own form (one ``kind = "network"`` benchmark per batch, per-round times in
``extra_info.impls``), so that :mod:`~manual_backprop.bench.report` renders
it (and ``manual-backprop report --compare`` compares two of them).
"""

from __future__ import annotations

import datetime
import importlib.util
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable


from ..description.case import Case, make_case
from ..environment import version_of
from ..errors import InputError
from . import impls
from .grid import timed_target
from .machine import GAP_S, cpu_name, machine_info
from .timer import Interleaved

# What the user's code is timed against (the checking engine and the per-sample loop are left out).
AGAINST = ("numpy_fast", "floor_numpy", "torch", "floor_torch", "jax")
BATCHES = (1, 8, 64, 512, 4096)


@dataclass
class Outcome:
    """The run: the JSON document (``data``), or where the user's code went wrong (``failure``)."""

    data: dict[str, Any] | None = None
    failure: str | None = None
    checks: dict[int, dict[str, Any]] = field(default_factory=dict)  # batch -> the user's check
    left_out: list[str] = field(default_factory=list)


def bench_code(code, case: Case, batches: tuple[int, ...] = BATCHES, rounds: int = 5,
               progress: Callable[[str], None] | None = None) -> Outcome:
    """Time ``code`` (a ready :class:`~manual_backprop.testing.network.UserCode`) on ``case``'s network.

    The parameters are ``case``'s; the data at each batch is drawn from its seed.
    """
    say = progress or (lambda text: None)
    net = case.network
    refuse(case)
    if case.optimizer is not None:
        say("bench: the optimiser step is not timed; the bench times the loss and its gradients")
    against = [i for i in AGAINST if impls.LIBRARY[i] == "numpy" or importlib.util.find_spec(impls.LIBRARY[i])]
    out = Outcome(left_out=[i for i in AGAINST if i not in against])
    benchmarks = []
    for batch in batches:
        point = make_case(net, case.params, seed=case.seed, batch=batch, source=case.source)
        T = timed_target(point)
        built = {"user": impls.build_user(code, point)}
        built.update({i: impls.build(i, point, T) for i in against})
        user_check = _first_call_and_check(built, point, code.label)
        out.checks[batch] = user_check
        if not user_check["ok"]:
            out.failure = user_check["message"]
            return out
        timer = Interleaved({i: p.call for i, p in built.items()},
                            gap_s=GAP_S if impls.needs_gap(point) else 0.0, library=impls.LIBRARY)
        say(f"batch {batch}: checked against the engine; timing {len(built)} implementations, {rounds} rounds")
        try:
            timer.calibrate()
            timer.run(rounds)
        except impls.CodeFailed as e:
            out.failure = f"at batch {batch}: {e}"
            return out
        round_s = [sum(timer.times[i][r] * timer.iterations[i] for i in timer.times) for r in range(rounds)]
        benchmarks.append({
            "name": f"bench_code[{code.label}-B{batch}]", "fullname": f"bench --code {code.label} B={batch}",
            "group": f"{net.describe()} B={batch}",
            "stats": {"median": statistics.median(round_s), "min": min(round_s), "max": max(round_s),
                      "rounds": rounds},
            "extra_info": {"kind": "network", "network": "-".join(map(str, net.sizes)), "dtype": net.dtype,
                           "batch": batch,
                           "impls": {i: {"times": timer.times[i], "iterations": timer.iterations[i],
                                         **built[i].extra} for i in built}},
        })
    out.data = {
        "machine_info": {"manual_backprop": machine_info(GAP_S), "cpu": {"brand_raw": cpu_name()}},
        "datetime": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "version": version_of("pytest-benchmark") or "-",
        "benchmarks": benchmarks,
        "bench_code": {"code": code.label, "network": net.describe(), "source": case.source,
                       "batches": list(batches), "rounds": rounds, "checks": out.checks},
    }
    return out


def refuse(case: Case) -> None:
    """An :class:`InputError` for a network the bench cannot time (before any work or output)."""
    if case.network.has_norm:
        raise InputError(f"bench: {case.source}: the fast engine has no norms, so a network with "
                         f"{'/'.join(case.network.norms)} is not benched yet")


def _first_call_and_check(built: dict[str, impls.Prepared], case: Case, label: str) -> dict[str, Any]:
    """Call each implementation once and judge it against the engine; the user's verdict as a dict."""
    try:
        built["user"].call()
        checks = impls.check(case, "user", built["user"])
    except impls.CodeFailed as e:
        return {"ok": False, "message": f"at batch {case.batch}: {e}"}
    for impl, prepared in built.items():
        if impl == "user":
            continue
        prepared.call()
        ours = [c for c in impls.check(case, impl, prepared) if not c.ok]
        if ours:  # the project's own implementation disagreeing is a bug of ours, never the user's
            raise AssertionError(ours[0].message(ours=impl, where=f"{impl} at batch {case.batch}"))
    wrong = [c for c in checks if not c.ok]
    worst = max((c.max_rel_err for c in checks if c.max_rel_err is not None), default=None)
    if wrong:
        c = wrong[0]
        return {"ok": False, "wrong": [w.name for w in wrong], "max_rel_err": worst,
                "message": f"{c.message(ours=label, where=f'at batch {case.batch}')}; not timed "
                           f"(`manual-backprop validate --code` shows which step is wrong)"}
    return {"ok": True, "max_rel_err": worst}
