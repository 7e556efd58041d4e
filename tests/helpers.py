"""Small helpers the tests share: networks by description, and the kink fixture."""

from __future__ import annotations

import numpy as np

from manual_backprop import Network, make_case
from manual_backprop.description.case import Case


def case_of(sizes, activations, loss, *, reduction="mean", dtype="float64", batch=6, seed=0, **network) -> Case:
    """A case drawn from ``seed``; ``network`` passes on Network's other keywords (``l2``, ``l2_convention``, ...)."""
    return make_case(Network(tuple(sizes), tuple(activations), loss, reduction, dtype, **network), seed=seed,
                     batch=batch)


def with_kinks(case: Case, rows: int = 2) -> Case:
    """The same case with its first ``rows`` inputs zero and b1 = 0, so those rows have Z1 == 0 exactly."""
    X = case.X.copy()
    X[:rows] = 0
    params = dict(case.params)
    params["b1"] = np.zeros_like(params["b1"])
    return make_case(case.network, params, X, case.Y, seed=case.seed)


def torch_ref():
    """references.torch_ref, or skip the test where torch is not installed."""
    import pytest

    pytest.importorskip("torch")
    from manual_backprop import references

    return references.load("torch")


def jax_ref():
    """references.jax_ref, or skip the test where JAX is not installed."""
    import pytest

    pytest.importorskip("jax")
    from manual_backprop import references

    return references.load("jax")
