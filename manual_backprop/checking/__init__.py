"""``check``: the engine against every reference, tensor by tensor (:mod:`.checker`).

:mod:`.overflow` tells an input that leaves its dtype's range from a wrong
rule; :mod:`.rounding` tells a float32 failure that is rounding from one that
is a bug.
"""

from .checker import CheckReport, check

__all__ = ["CheckReport", "check"]
