"""manual_backprop: hand-derived NumPy backpropagation, checked tensor by tensor.

The public names live here; each comes from the module that owns it.
"""

from .case import Case, Claim, make_case
from .catalog import load_example
from .checker import check
from .derivation import LayerReport, Validation, check_layer, validate
from .engine import backward, forward, run
from .errors import InputError
from .netfile import load_case, parse_case
from .network import Network

__all__ = [
    "Case", "Claim", "InputError", "LayerReport", "Network", "Validation", "backward", "check", "check_layer",
    "forward", "load_case", "load_example", "make_case", "parse_case", "run", "validate",
]
__version__ = "0.1.0"
