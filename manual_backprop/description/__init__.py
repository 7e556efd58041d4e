"""The one description of a network, and what fills it in.

- :mod:`.network`: :class:`Network` (widths, activations, loss, reduction,
  dtype) and the names of every tensor a run makes;
- :mod:`.case`: a :class:`Case` (a network with its parameters and data),
  checked before anything runs;
- :mod:`.netfile`: the TOML network file;
- :mod:`.catalog`: the worked examples shipped in ``manual_backprop/examples``.

It drives the engine, both framework references and the tests.
"""

from .case import Case, Claim, make_case
from .catalog import load_example
from .netfile import load_case, parse_case
from .network import Network

__all__ = ["Case", "Claim", "Network", "load_case", "load_example", "make_case", "parse_case"]
