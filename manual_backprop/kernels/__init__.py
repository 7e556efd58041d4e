"""Pure forward/backward kernel pairs, one module per piece of the maths."""

from .activations import ACTIVATIONS, Activation
from .linear import linear_backward, linear_forward
from .losses import LOSSES, Loss

__all__ = ["ACTIVATIONS", "Activation", "LOSSES", "Loss", "linear_backward", "linear_forward"]
