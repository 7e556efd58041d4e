"""A two-layer fully connected classifier in the course style, with a hand-written backward pass.

affine - ReLU - affine - softmax, trained with the mean softmax cross-entropy::

    Z1 = X @ W1 + b1          X (N, D), W1 (D, H), b1 (H,)
    A1 = max(0, Z1)
    S  = A1 @ W2 + b2         W2 (H, C), b2 (C,): the class scores
    P  = softmax(S)           row by row
    L  = -(1/N) sum_i log P[i, y_i]          y (N,) integer labels 0..C-1

and its gradients::

    dS  = (P - onehot(y)) / N
    dW2 = A1.T @ dS,   db2 = dS.sum(axis=0)
    dA1 = dS @ W2.T,   dZ1 = dA1 * (Z1 > 0)
    dW1 = X.T @ dZ1,   db1 = dZ1.sum(axis=0)

Check it with::

    manual-backprop validate examples/two_layer.toml --code examples/two_layer_net.py:TwoLayerNet
"""

import numpy as np


class TwoLayerNet:
    """``params`` holds W1 (D, H), b1 (H,), W2 (H, C), b2 (C,); ``loss(X, y)`` returns ``(loss, grads)``."""

    def __init__(self, input_size, hidden_size, output_size, std=1e-4):
        rng = np.random.default_rng(0)
        self.params = {
            "W1": std * rng.standard_normal((input_size, hidden_size)),
            "b1": np.zeros(hidden_size),
            "W2": std * rng.standard_normal((hidden_size, output_size)),
            "b2": np.zeros(output_size),
        }

    def loss(self, X, y=None, reg=0.0):
        """The class scores (N, C) without ``y``; with it, the loss and the gradient of every parameter."""
        W1, b1 = self.params["W1"], self.params["b1"]
        W2, b2 = self.params["W2"], self.params["b2"]
        N = X.shape[0]

        hidden_in = X @ W1 + b1
        hidden = np.maximum(0, hidden_in)
        scores = hidden @ W2 + b2
        if y is None:
            return scores

        shifted = scores - scores.max(axis=1, keepdims=True)  # softmax is unchanged by a shift
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        loss = -log_probs[np.arange(N), y].mean()
        loss += 0.5 * reg * (np.sum(W1 * W1) + np.sum(W2 * W2))

        dscores = np.exp(log_probs)
        dscores[np.arange(N), y] -= 1
        dscores /= N

        grads = {}
        grads["W2"] = hidden.T @ dscores + reg * W2
        grads["b2"] = dscores.sum(axis=0)
        dhidden = dscores @ W2.T
        dhidden_in = dhidden * (hidden_in > 0)
        grads["W1"] = X.T @ dhidden_in + reg * W1
        grads["b1"] = dhidden_in.sum(axis=0)
        return loss, grads
