"""Pure forward/backward kernel pairs, one module per piece of the maths."""

from .activations import ACTIVATIONS, Activation
from .linear import linear_backward, linear_forward
from .losses import LOSSES, Loss
from .normalization import DEFAULT_VARIANCE_SHIFT, NORM_CHOICES, NORMS, Norm, norm_backward, norm_forward
from .optimizers import OPTIMIZERS, Optimizer

__all__ = ["ACTIVATIONS", "DEFAULT_VARIANCE_SHIFT", "LOSSES", "NORMS", "NORM_CHOICES", "OPTIMIZERS", "Activation", "Loss", "Norm", "Optimizer",
           "linear_backward", "linear_forward", "norm_backward", "norm_forward"]
