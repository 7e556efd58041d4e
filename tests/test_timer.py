"""The interleaved timer: A B C … A B C …, per-round ratios, their spread, and the verdict on a target.

A fake clock makes every time known: each call advances it by a set amount,
so the expected times and ratios are arithmetic on those amounts.
"""

from __future__ import annotations

import pytest

from manual_backprop.bench.timer import Interleaved, Spread, median_interval, per_round_ratio


class FakeMachine:
    """A clock that each call advances by ``cost[name] * speed``; ``speed`` can drift between rounds."""

    def __init__(self, cost: dict[str, float]):
        self.now = 0.0
        self.cost = cost
        self.speed = 1.0
        self.log: list[str] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.log.append(f"sleep {s}")
        self.now += s

    def call(self, name: str):
        def fn():
            self.log.append(name)
            self.now += self.cost[name] * self.speed
        return fn


def timer_for(machine: FakeMachine, **options) -> Interleaved:
    return Interleaved({n: machine.call(n) for n in machine.cost}, clock=machine.clock, sleep=machine.sleep,
                       **options)


def test_calibration_makes_each_block_last_the_block_time():
    m = FakeMachine({"fast": 1e-3, "slow": 0.05})
    t = timer_for(m, block_s=0.02)
    t.calibrate()
    # 1 ms a call: a block of 20 calls lasts 20 ms; a call of 50 ms is a block by itself.
    assert t.iterations["fast"] * 1e-3 >= 0.02 and (t.iterations["fast"] // 2) * 1e-3 < 0.02
    assert t.iterations["slow"] == 1


def test_rounds_interleave_the_implementations_in_order():
    m = FakeMachine({"A": 0.01, "B": 0.02, "C": 0.03})
    t = timer_for(m, block_s=0.0)  # one call a block
    t.calibrate()
    m.log.clear()
    t.run(3)
    assert m.log == ["A", "B", "C"] * 3
    for name, cost in m.cost.items():
        assert t.times[name] == pytest.approx([cost] * 3)


def test_the_pause_falls_only_where_the_library_changes_and_a_warm_up_follows_it():
    m = FakeMachine({"fast": 0.01, "floor": 0.01, "torch": 0.01})
    t = timer_for(m, block_s=0.0, gap_s=0.25, library={"fast": "numpy", "floor": "numpy", "torch": "torch"})
    t.calibrate()
    m.log.clear()
    t.run(2)
    assert m.log == ["sleep 0.25", "fast", "fast", "floor", "sleep 0.25", "torch", "torch"] * 2
    # The untimed warm-up call after each pause is not in the times.
    assert t.times["fast"] == pytest.approx([0.01, 0.01])


def test_a_drift_between_rounds_cancels_in_the_per_round_ratio():
    """The machine slows down 2x, then 3x, between rounds: each round's ratio is still 2 / 1."""
    m = FakeMachine({"fast": 0.01, "torch": 0.02})
    t = timer_for(m, block_s=0.0)
    t.calibrate()
    for speed in (1.0, 2.0, 3.0):
        m.speed = speed
        t.round()
    r = per_round_ratio(t.times, "torch", "fast")
    assert (r.median, r.lo, r.hi) == pytest.approx((2.0, 2.0, 2.0))
    # Timed apart (torch in the first round, fast in the last), the drift would be in the ratio: 0.02 / 0.03.
    assert t.times["torch"][0] / t.times["fast"][2] == pytest.approx(2 / 3)


def test_per_round_ratio_is_the_median_and_range_of_each_rounds_ratio():
    times = {"a": [1.0, 2.0, 3.0], "b": [2.0, 2.0, 2.0], "c": [4.0, 1.0, 6.0]}
    r = per_round_ratio(times, "a", "b")
    assert (r.median, r.lo, r.hi) == (1.0, 0.5, 1.5)
    # Several denominators: the fastest of them in each round (2, 1, 2).
    r = per_round_ratio(times, "a", ["b", "c"])
    assert (r.median, r.lo, r.hi) == (1.5, 0.5, 2.0)
    assert per_round_ratio(times, "a", "missing") is None
    assert per_round_ratio({"a": [1.0], "b": [1.0, 2.0]}, "a", "b") is None


@pytest.mark.parametrize(("spread", "limit", "kind", "verdict"), [
    (Spread(0.9, 0.8, 1.0), 1.0, "<=", "holds"),     # the whole range within the limit
    (Spread(1.2, 1.05, 1.3), 1.0, "<=", "missed"),   # the whole range beyond it
    (Spread(1.0, 0.95, 1.1), 1.0, "<=", "noise"),    # the range straddles it
    (Spread(150, 120, 200), 100, ">=", "holds"),
    (Spread(90, 80, 99), 100, ">=", "missed"),
    (Spread(100, 90, 110), 100, ">=", "noise"),
])
def test_a_target_is_missed_only_when_the_whole_range_misses_it(spread, limit, kind, verdict):
    assert spread.verdict(limit, kind) == verdict


def test_spread_text_shows_the_range_when_there_is_one():
    assert Spread.of([1.0, 1.5, 1.25]).text() == "1.25 (1.00–1.50)"
    assert Spread.of([2.0]).text() == "2.00"
    with pytest.raises(ValueError):
        Spread.of([])


@pytest.mark.parametrize(("n", "k"), [
    (5, 1),   # P(B <= 0) = 1/32 > 1%: nothing better than the whole range
    (7, 1),   # P(B <= 0) = 1/128 <= 1%, P(B <= 1) = 8/128 > 1%
    (10, 1),  # P(B <= 1) = 11/1024 = 1.07% > 1%
    (11, 2),  # P(B <= 1) = 12/2048 <= 1%, P(B <= 2) = 67/2048 > 1%
    (15, 3),  # P(B <= 2) = 121/32768 <= 1%, P(B <= 3) = 576/32768 > 1%
    (21, 5),  # P(B <= 4) = 7547/2^21 <= 1%, P(B <= 5) = 27896/2^21 > 1%
])
def test_the_spread_is_the_medians_distribution_free_98_percent_interval(n, k):
    assert median_interval(n) == k


def test_with_15_rounds_two_disturbed_rounds_each_way_do_not_decide_the_verdict():
    ratios = [1.30] * 11 + [0.70, 0.80, 2.5, 3.0]  # two rounds where the other side was slowed, two ours
    spread = Spread.of(ratios)
    assert (spread.median, spread.lo, spread.hi) == (1.30, 1.30, 1.30)
    assert spread.verdict(1.0) == "missed"
    assert Spread.of([1.30] * 4 + [0.70, 2.5, 3.0]).verdict(1.0) == "noise"  # 7 rounds: the whole range


def _ratio_verdict(limit: float):
    """A predicate for :meth:`Interleaved.more_rounds`: a/b's verdict against ``limit`` is within the noise."""
    return lambda times: per_round_ratio(times, "a", "b").verdict(limit) == "noise"


def test_an_undecided_verdict_gets_more_rounds_until_the_medians_interval_decides_it():
    """Round 1's a/b is 0.9 (a disturbed round), every later one 1.3. Up to 10 rounds the interval is the
    whole range [0.9, 1.3], which straddles 1.0; at 11 it is the 2nd to the 10th value: [1.3, 1.3], missed."""
    m = FakeMachine({"b": 0.01})
    costs = iter([0.01, 0.01, 0.009] + [0.013] * 100)  # two calibration calls, then one call per round

    def a():
        m.now += next(costs)

    t = Interleaved({"a": a, "b": m.call("b")}, clock=m.clock, sleep=m.sleep, block_s=0.0)
    t.run(5)
    assert per_round_ratio(t.times, "a", "b").verdict(1.0) == "noise"
    assert t.more_rounds(_ratio_verdict(1.0), max_rounds=45) == 6
    assert len(t.times["a"]) == len(t.times["b"]) == 11
    assert per_round_ratio(t.times, "a", "b").verdict(1.0) == "missed"


def test_more_rounds_stop_at_the_cap_and_add_none_to_a_decided_verdict():
    m = FakeMachine({"a": 0.0101, "b": 0.01})
    t = timer_for(m, block_s=0.0)
    t.run(5)
    assert t.more_rounds(_ratio_verdict(1.0), max_rounds=45) == 0  # 1.01 every round: missed already
    assert t.more_rounds(lambda times: True, max_rounds=8) == 3 and len(t.times["a"]) == 8
    assert t.more_rounds(lambda times: True, max_rounds=5) == 0  # the cap below the rounds made: none
