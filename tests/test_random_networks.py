"""Hypothesis-generated networks: every tensor agrees with torch, JAX and finite differences.

Depth 1-4, widths 1-64, batch 1-128, every activation and loss, both
reductions, both dtypes. float64 is the correctness gate; float32 is an
agreement check under the float32 tolerance (which grows with the reduction
length), where units within rounding of a ReLU kink may legitimately flip.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manual_backprop import Network, make_case, references
from manual_backprop.checking.checker import check
from manual_backprop.kernels import ACTIVATIONS

#: Every activation a hidden layer may have, from the registry: a new one is drawn with no edit here.
HIDDEN = tuple(name for name, act in ACTIVATIONS.items() if not act.last_layer_only)
REFS = [r for r in ("torch", "jax", "fd") if references.is_installed(r)]


LOSSES = ("half_mse", "mse", "bce", "softmax_cross_entropy")


@st.composite
def networks(draw, dtype, loss):
    depth = draw(st.integers(1, 4))
    widths = draw(st.lists(st.integers(1, 64), min_size=depth + 1, max_size=depth + 1))
    hidden = draw(st.lists(st.sampled_from(HIDDEN), min_size=depth - 1, max_size=depth - 1))
    if loss == "bce":
        last = "sigmoid"
    elif loss == "softmax_cross_entropy":
        last = "softmax"
        widths[-1] = max(widths[-1], 2)
    else:
        last = draw(st.sampled_from(HIDDEN + (("softmax",) if widths[-1] >= 2 else ())))
    reduction = draw(st.sampled_from(("mean", "sum")))
    net = Network(tuple(widths), tuple(hidden) + (last,), loss, reduction, dtype)
    batch = draw(st.integers(1, 128))
    seed = draw(st.integers(0, 2**16))
    return make_case(net, seed=seed, batch=batch)


def _assert_agrees(case):
    report = check(case, against=REFS)
    bad = {n: {r: (c.status, c.margin, c.note) for r, c in per.items() if not c.ok}
           for n, per in report.checks.items() if any(not c.ok for c in per.values())}
    assert report.ok, f"{case.network.describe()} batch {case.batch} seed {case.seed}: {bad}"
    assert set(report.references) == set(REFS)
    for name in report.order:
        assert np.asarray(report.trace[name]).dtype == case.network.np_dtype


# One test per loss, so that pytest-xdist spreads the examples over the workers.
@pytest.mark.parametrize("loss", LOSSES)
@settings(max_examples=10)
@given(data=st.data())
def test_every_tensor_of_a_random_float64_network_agrees_with_every_reference(loss, data):
    _assert_agrees(data.draw(networks("float64", loss)))


@pytest.mark.parametrize("loss", LOSSES)
@settings(max_examples=6)
@given(data=st.data())
def test_every_tensor_of_a_random_float32_network_agrees_within_float32_tolerance(loss, data):
    _assert_agrees(data.draw(networks("float32", loss)))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("loss,last", [("half_mse", "relu"), ("mse", "tanh"), ("bce", "sigmoid"),
                                       ("softmax_cross_entropy", "softmax"), ("half_mse", "softmax")])
def test_each_loss_agrees_at_the_hypothesis_size_limits(dtype, loss, last):
    net = Network((64, 64, 64, 64, 64 if last != "sigmoid" else 3), ("relu", "tanh", "sigmoid", last), loss, "mean", dtype)
    _assert_agrees(make_case(net, seed=11, batch=128))
