"""Pure forward/backward kernel pairs, one module per piece of the maths."""

from .activations import ACTIVATIONS, Activation
from .linear import linear_backward, linear_forward
from .losses import LOSSES, Loss
from .optimizers import OPTIMIZERS, Optimizer

__all__ = ["ACTIVATIONS", "LOSSES", "OPTIMIZERS", "Activation", "Loss", "Optimizer", "linear_backward",
           "linear_forward"]
