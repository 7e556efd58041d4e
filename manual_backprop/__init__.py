"""manual_backprop: hand-derived NumPy backpropagation, checked tensor by tensor.

The public names live here; each comes from the folder that owns it:
``description`` (the network, its parameters and data, the TOML file),
``engine`` (forward and the hand-derived backward), ``checking`` (``check``),
``validation`` (``validate``) and ``testing`` (``check_layer``).
"""

from .checking import check
from .description import Case, Claim, Network, load_case, load_example, make_case, parse_case
from .engine import backward, forward, run
from .errors import InputError
from .testing import LayerReport, check_layer
from .validation import Validation, validate

__all__ = [
    "Case", "Claim", "InputError", "LayerReport", "Network", "Validation", "backward", "check", "check_layer",
    "forward", "load_case", "load_example", "make_case", "parse_case", "run", "validate",
]
__version__ = "0.1.0"
