"""L2 regularisation: a penalty added to the loss, and its gradient added to each weight's.

Two conventions are published, and the worked examples disagree on them::

    "half"   L_reg = ½ λ Σ_l ‖W_l‖²     dL_reg/dW_l = λ W_l      (torch.optim.SGD(weight_decay=λ) adds λW)
    "full"   L_reg =   λ Σ_l ‖W_l‖²     dL_reg/dW_l = 2λ W_l

``‖W‖²`` is the sum of the squares of every entry (the squared Frobenius norm).
Biases are not regularised unless asked for (``biases=True``), as in the
course assignments. The penalty is not divided by the batch size: it is a
term of ``L``, beside the data loss ``L_data``, ``L = L_data + L_reg``.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

#: The factor ``f`` in ``L_reg = f λ Σ ‖W‖²`` for each convention; the gradient is ``2 f λ W``.
CONVENTIONS = {"half": 0.5, "full": 1.0}


def l2_penalty(weights: Iterable[np.ndarray], lam: float, convention: str = "half") -> np.ndarray:
    """``L_reg = f λ Σ ‖W‖²`` over ``weights`` (f = ½ or 1), a 0-d array in their dtype.

    Which parameters are covered is the network's to say
    (:meth:`~manual_backprop.Network.l2_names`: every W, and the biases when asked).
    """
    weights = list(weights)
    c = weights[0].dtype.type if weights else np.float64
    total = c(0)
    for W in weights:
        total = total + np.vdot(W, W)  # Σ w² over every entry
    return np.asarray(c(CONVENTIONS[convention]) * c(lam) * total)


def l2_gradient(W: np.ndarray, lam: float, convention: str = "half") -> np.ndarray:
    """``dL_reg/dW = 2 f λ W``: ``λ W`` under "half", ``2 λ W`` under "full"; W's shape and dtype."""
    c = W.dtype.type
    return c(2 * CONVENTIONS[convention] * lam) * W
