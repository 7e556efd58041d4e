"""Comparison: the tolerance policy and the tensor-by-tensor comparator."""

from .comparator import (
    PASSING,
    TensorCheck,
    Worst,
    compare_arrays,
    compare_projections,
    compare_traces,
    compared_names,
)
from .tolerance import FLOOR, UNIT_ROUNDOFF, K, error_scales, kink_scales, tolerance

__all__ = [
    "FLOOR", "K", "PASSING", "TensorCheck", "UNIT_ROUNDOFF", "Worst", "compare_arrays",
    "compare_projections", "compare_traces", "compared_names", "error_scales", "kink_scales", "tolerance",
]
