"""manual_backprop: hand-derived NumPy backpropagation, checked tensor by tensor.

The public names live here; each comes from the module that owns it.
"""

from .case import Case, Claim, make_case
from .engine import backward, forward, run
from .errors import InputError
from .netfile import load_case, parse_case
from .network import Network

__all__ = [
    "Case", "Claim", "InputError", "Network", "backward", "forward", "load_case",
    "make_case", "parse_case", "run",
]
__version__ = "0.1.0"
