"""The two pictures ``manual-backprop train`` writes: the learned decision boundary, and the loss curve.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no window,
no global state), so they work on a headless machine and in CI. Each is
rendered in memory and written with
:func:`~manual_backprop.files.save_figure_atomically`: an interrupted or
failed run leaves the old picture or none, never a truncated PNG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..files import save_figure_atomically
from .train import BOUNDARY_RADIUS, TrainResult, outputs, predicted_class, probability_inside

INSIDE, OUTSIDE = "#d7301f", "#2b6cb0"   # class 1 (inside the circle), class 0 (outside)


def require_matplotlib() -> None:
    """An :class:`InputError` with the install hint when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InputError("train draws its pictures with matplotlib, which is not installed: "
                         "pip install 'manual-backprop[plot]' (or pass --no-plots)") from None


def _figure(width: float, height: float):
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _summary(result: TrainResult) -> str:
    net = result.network
    batch = "full batch" if result.batch_size == result.data.X_train.shape[0] else f"batches of {result.batch_size}"
    return (f"{'-'.join(map(str, net.sizes))} {'/'.join(net.activations)}, {net.loss} · "
            f"{result.steps} steps, {batch}, lr {result.learning_rate:g}")


def decision_boundary(result: TrainResult, path: Path) -> Path:
    """The plane coloured by the network's probability of "inside", its 0.5 contour, and the points."""
    net, data = result.network, result.data
    if net.sizes[0] != 2:
        raise InputError(f"a decision boundary is drawn in the plane: the network has {net.sizes[0]} inputs, not 2")
    fig = _figure(6.4, 6.8)
    ax = fig.add_subplot()
    pts = np.concatenate([data.X_train, data.X_held]).astype(np.float64)
    lo, hi = pts.min(axis=0) - 0.3, pts.max(axis=0) + 0.3
    g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], 300), np.linspace(lo[1], hi[1], 300))
    grid = np.c_[g0.ravel(), g1.ravel()].astype(net.np_dtype)
    P = probability_inside(outputs(net, result.params, grid, result.data.X_train)).reshape(g0.shape).astype(np.float64)

    filled = ax.contourf(g0, g1, P, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.35, vmin=0, vmax=1)
    ax.contour(g0, g1, P, levels=[0.5], colors="k", linewidths=2)
    t = np.linspace(0, 2 * np.pi, 400)
    ax.plot(BOUNDARY_RADIUS * np.cos(t), BOUNDARY_RADIUS * np.sin(t), "--", color="0.35", lw=1)

    for X, labels, marker, size, what in ((data.X_train, data.labels_train, "o", 14, "train"),
                                          (data.X_held, data.labels_held, "^", 30, "held-out")):
        for cls, colour, name in ((1, INSIDE, "inside"), (0, OUTSIDE, "outside")):
            sel = labels == cls
            ax.scatter(X[sel, 0], X[sel, 1], s=size, marker=marker, c=colour, edgecolors="white",
                       linewidths=0.4, label=f"{what}, {name}")
    wrong = predicted_class(outputs(net, result.params, data.X_held, data.X_train)) != data.labels_held
    if wrong.any():
        ax.scatter(data.X_held[wrong, 0], data.X_held[wrong, 1], s=110, facecolors="none",
                   edgecolors="k", linewidths=1.2, label=f"held-out, misclassified ({int(wrong.sum())})")
    ax.plot([], [], "k-", lw=2, label="learned boundary (p = 0.5)")
    ax.plot([], [], "--", color="0.35", lw=1, label=f"circle r = {BOUNDARY_RADIUS:g} between the classes")

    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_aspect("equal")
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.set_title(f"Learned decision boundary · held-out accuracy {result.held_out_accuracy:.1%}\n"
                 f"{_summary(result)}", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=3, fontsize=7, frameon=False)
    fig.colorbar(filled, ax=ax, shrink=0.8, label="network's probability of inside")
    return save_figure_atomically(fig, path)


def loss_curve(result: TrainResult, path: Path) -> Path:
    """The loss of every step's batch and of the held-out points (log scale), and both accuracies below."""
    h = result.history
    fig = _figure(7.0, 5.2)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[2.2, 1])
    steps = np.arange(len(h.loss))
    batch_label = "training batch loss (each step)" if result.batch_size < result.data.X_train.shape[0] \
        else "training loss (each step, full batch)"
    top.plot(steps, h.loss, color="0.55", lw=0.8, label=batch_label)
    top.plot(h.eval_steps, h.held_out_loss, color="#d7301f", lw=1.6, label="held-out loss")
    top.set_yscale("log")
    top.set_ylabel(f"{result.network.loss} ({result.network.reduction})")
    top.grid(True, which="both", alpha=0.3)
    top.legend(fontsize=8)
    top.set_title(f"Loss curve · final training loss {result.final_loss:.4g}\n{_summary(result)}", fontsize=10)

    bottom.plot(h.eval_steps, np.asarray(h.train_accuracy) * 100, color="0.35", lw=1.2, label="training")
    bottom.plot(h.eval_steps, np.asarray(h.held_out_accuracy) * 100, color="#d7301f", lw=1.6, label="held-out")
    bottom.axhline(95, color="k", ls=":", lw=1, label="95%")
    bottom.set_ylim(min(40.0, float(np.min(h.held_out_accuracy)) * 100 - 5), 101)
    bottom.set_ylabel("accuracy (%)")
    bottom.set_xlabel("descent step")
    bottom.grid(True, alpha=0.3)
    bottom.legend(fontsize=8, loc="lower right")
    return save_figure_atomically(fig, path)
