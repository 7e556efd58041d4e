"""Comparison: the tolerance policy and the tensor-by-tensor comparator."""

from .comparator import (
    PASSING,
    TensorCheck,
    Worst,
    compare_arrays,
    compare_projections,
    compare_traces,
    compare_values,
    compared_names,
    flipped_units,
    may_flip,
    mismatch_message,
    mismatch_sentence,
    possible_flips,
)
from .tolerance import (
    FLOOR,
    UNIT_ROUNDOFF,
    K,
    error_scales,
    kink_scales,
    layer_error_scales,
    next_error_scales,
    per_sample_error_scales,
    step_error_scales,
    trajectory_error_scales,
    tolerance,
)

__all__ = [
    "FLOOR", "PASSING", "UNIT_ROUNDOFF", "K", "TensorCheck", "Worst",
    "compare_arrays", "compare_projections", "compare_traces", "compare_values", "compared_names",
    "error_scales", "flipped_units", "kink_scales", "layer_error_scales", "may_flip", "mismatch_message",
    "mismatch_sentence", "next_error_scales", "step_error_scales", "trajectory_error_scales", "per_sample_error_scales", "possible_flips", "tolerance",
]
