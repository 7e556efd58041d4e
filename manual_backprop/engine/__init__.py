"""The NumPy engine: every rule comes from :mod:`manual_backprop.kernels`.

- :mod:`.trace`: the checking engine, forward and hand-derived backward, every tensor named;
- :mod:`.fast`: the same rules on preallocated buffers, for training and benchmarks;
- :mod:`.per_sample`, :mod:`.accumulate`, :mod:`.sgd`: what comes after one batch gradient.
"""

from .trace import Trace, backward, forward, loss_value, run

__all__ = ["Trace", "backward", "forward", "loss_value", "run"]
