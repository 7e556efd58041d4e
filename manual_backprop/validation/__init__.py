"""``validate``: a hand derivation's claimed numbers, judged step by step.

:func:`validate` judges a file's ``[claimed]`` tensors at their written
precision, tells own errors from carried ones and names the classic mistake
that reproduces a wrong claim (:data:`MISTAKES`), or none.
"""

from .mistakes import MISTAKES, Mistake
from .validate import ClaimReport, Validation, validate

__all__ = ["ClaimReport", "MISTAKES", "Mistake", "Validation", "validate"]
