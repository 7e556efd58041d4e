"""``manual-backprop train``: gradient descent with the hand-derived gradients only (seed 004's demo)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..environment import describe
from ..errors import InputError
from ..files import check_writable_folder
from ..kernels import LOSSES
from ..training import train as T
from .common import add_l2_options, case_from_args

DEFAULT_EXAMPLE = "seed-004"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train", help="train a network on two classes split by a circle, with the hand-derived gradients",
        description="Train a network by plain gradient descent, every gradient from the NumPy "
                    "hand-derived backward, on noisy two-class data split by a circle (drawn from "
                    "--seed), and write decision_boundary.png and loss_curve.png. With "
                    "--check-every K, every K-th gradient is re-checked against torch or JAX and "
                    "training stops (exit 1) at the first disagreement; a run whose loss or parameters "
                    "overflow stops too (exit 1, no pictures). Default network: seed 004's "
                    "2-4-2-1 ReLU/ReLU/sigmoid with binary cross-entropy.")
    p.add_argument("file", nargs="?", metavar="FILE",
                   help="a network file (TOML); its [parameters], if any, are the starting point")
    p.add_argument("--example", metavar="NAME", help=f"a shipped example (default: {DEFAULT_EXAMPLE})")
    g = p.add_argument_group("network inline (instead of FILE)")
    g.add_argument("--sizes", metavar="N0,N1,...", help="widths, input first, e.g. 2,4,2,1")
    g.add_argument("--activations", metavar="A1,A2,...", help="one per Linear layer, e.g. relu,relu,sigmoid")
    g.add_argument("--loss", help=", ".join(LOSSES))
    g.add_argument("--reduction", help="mean (default) or sum")
    p.add_argument("--dtype", choices=("float64", "float32"), help="override the network's dtype")
    add_l2_options(p)

    t = p.add_argument_group("training")
    length = t.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, help=f"passes over the training points (default {T.EPOCHS})")
    length.add_argument("--steps", type=int, help="descent steps, instead of --epochs")
    t.add_argument("--batch-size", type=int, metavar="B", help="mini-batch size (default: the full batch)")
    t.add_argument("--lr", type=float, help=f"learning rate (default: the file's [sgd], else {T.LEARNING_RATE})")
    t.add_argument("--optimizer", choices=("sgd", "momentum", "rmsprop", "adam"), default="sgd",
                   help="the update, with torch's constants (momentum 0.9 in torch's buffer form; rmsprop "
                        "decay 0.99; adam betas 0.9, 0.999; eps 1e-8), its state from zeros; with "
                        "--check-every each re-check compares the step with torch.optim's (default sgd)")
    t.add_argument("--seed", type=int, help="seed for the data, the shuffling and, unless the file gives "
                                            "them, the starting parameters (default: the file's seed)")
    t.add_argument("--samples", type=int, default=T.SAMPLES, help=f"points drawn (default {T.SAMPLES})")
    t.add_argument("--held-out", type=float, default=T.HELD_OUT,
                   help=f"fraction never trained on (default {T.HELD_OUT})")
    t.add_argument("--noise", type=float, default=T.NOISE,
                   help=f"standard deviation of the noise added to every point (default {T.NOISE})")

    c = p.add_argument_group("re-check and output")
    c.add_argument("--check-every", type=int, metavar="K", help="re-check the gradient every K steps")
    c.add_argument("--against", choices=("torch", "jax"), default="torch",
                   help="the reference of the re-check (default torch)")
    c.add_argument("--output", metavar="DIR", default=".", help="where the PNGs go (default: the current folder)")
    c.add_argument("--no-plots", action="store_true", help="write no pictures")
    c.add_argument("--html", metavar="FILE", help="also write one self-contained page: the log and the pictures")
    c.add_argument("--json", action="store_true", help="final metrics as one JSON object on standard output")
    p.set_defaults(run=run)


def _load(args: argparse.Namespace):
    """The case, and whether its source gave the starting parameters."""
    case = case_from_args(args, DEFAULT_EXAMPLE, inline_options=("sizes", "activations", "loss", "reduction"))
    return case, len(case.drawn) < len(case.params)  # some given: the file's parameters, as check uses them


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    case, has_params = _load(args)
    net = case.network
    seed = case.seed if args.seed is None else args.seed
    if seed < 0:
        raise InputError(f"--seed must be a non-negative integer, got {seed}")
    data = T.circle_data(net, args.samples, args.held_out, args.noise, seed)
    params = case.params if has_params else T.initial_parameters(net, seed)
    lr = args.lr if args.lr is not None else (case.learning_rate or T.LEARNING_RATE)
    n = data.X_train.shape[0]
    batch = args.batch_size if args.batch_size is not None else n
    if not 1 <= batch <= n:
        raise InputError(f"--batch-size must be between 1 and the {n} training points, got {batch}")
    if args.steps is not None:
        steps = args.steps
    else:
        epochs = T.EPOCHS if args.epochs is None else args.epochs
        if epochs < 1:
            raise InputError(f"--epochs must be a positive integer, got {epochs}")
        steps = T.steps_for(epochs, n, batch)
    out = Path(args.output)
    if args.html is not None:
        from ..display.output import check_output_path

        check_output_path(args.html)  # before any work
    if not args.no_plots:
        if net.sizes[0] != 2:
            raise InputError(f"the decision boundary is drawn in the plane: the network has {net.sizes[0]} "
                             f"inputs, not 2 (pass --no-plots to train without pictures)")
        from ..training.plots import require_matplotlib

        require_matplotlib()  # a missing matplotlib is an input error before training, not after
        check_writable_folder(out)  # so is an output folder that cannot be written (creates it if need be)

    with _progress(steps, enabled=not args.json) as update:
        result = T.train(net, params, data, learning_rate=lr, steps=steps,
                         batch_size=None if batch == n else batch, seed=seed,
                         check_every=args.check_every, against=args.against, progress=update,
                         optimizer=args.optimizer)

    files: list[str] = []
    if result.ok and not args.no_plots:
        from ..training.plots import decision_boundary, loss_curve

        files = [str(decision_boundary(result, out / "decision_boundary.png")),
                 str(loss_curve(result, out / "loss_curve.png"))]
    total = time.perf_counter() - started
    if args.html is not None:
        files.append(_write_page(args.html, case, result, seed, files, total))
    if args.json:
        from .common import print_json

        print_json(_json(case, result, seed, files, total))
    else:
        _print(case, result, seed, files, total)
    return 0 if result.ok else 1


def _write_page(path: str, case, result: T.TrainResult, seed: int, files: list[str], total: float) -> str:
    """The ``--html`` page: the same log as printed, and the pictures written (embedded)."""
    import io
    from contextlib import redirect_stdout

    from ..display.html import training_page
    from ..files import write_atomically

    log = io.StringIO()
    with redirect_stdout(log):
        _print(case, result, seed, files, total)
    pictures = [(Path(f).name, Path(f).read_bytes()) for f in files]
    write_atomically(path, training_page(case.title or "manual-backprop train", log.getvalue(), pictures))
    return str(path)


def _json(case, result: T.TrainResult, seed: int, files: list[str], total: float) -> dict:
    m = result.mismatch
    return {
        "ok": result.ok,
        "first_divergence": m.name if m else None,
        "diverged": result.diverged.to_json() if result.diverged else None,
        "network": case.network.describe(),
        "source": case.source,
        "seed": seed,
        "train_points": int(result.data.X_train.shape[0]),
        "held_out_points": int(result.data.X_held.shape[0]),
        "steps": result.steps,
        "epochs": result.epochs,
        "batch_size": result.batch_size,
        "learning_rate": result.learning_rate,
        "optimizer": result.optimizer,
        "final_loss": result.final_loss,
        "train_accuracy": result.train_accuracy,
        "held_out_loss": result.held_out_loss,
        "held_out_accuracy": result.held_out_accuracy,
        "seconds": result.seconds,
        "total_seconds": total,
        "check": None if result.against is None else {
            "against": result.against, "checks": result.checks, "ok": m is None,
            "mismatch": T.mismatch_json(m) if m else None},
        "files": files,
        "environment": describe(seed),
    }


def _print(case, result: T.TrainResult, seed: int, files: list[str], total: float) -> None:
    n, h = result.data.X_train.shape[0], result.data.X_held.shape[0]
    w = sys.stdout.write
    if case.title:
        from .common import printable

        w(f"{printable(case.title)}\n")
    w(f"network {case.network.describe()} · {n} training / {h} held-out points · seed {seed}\n")
    batch = "full batch" if result.batch_size == n else f"mini-batches of {result.batch_size}"
    opt = "" if result.optimizer == "sgd" else f", {result.optimizer}"
    w(f"{result.steps} descent steps ({result.epochs:g} epochs, {batch}, lr {result.learning_rate:g}{opt}) "
      f"in {result.seconds:.2f} s\n")
    w(f"training loss {result.final_loss:.4g} · training accuracy {result.train_accuracy:.1%} · "
      f"held-out accuracy {result.held_out_accuracy:.1%}\n")
    if result.against is not None:
        if result.mismatch is None:
            what = "gradient" if result.optimizer == "sgd" else f"gradient and {result.optimizer} step"
            w(f"{what} re-checked against {result.against} {result.checks} time(s): all agree\n")
        else:
            w(f"STOPPED: {T.mismatch_message(result.mismatch)}\n")
    if result.diverged is not None:
        w(f"{result.diverged.message}\n")
    if files:
        w("wrote " + ", ".join(files) + "\n")


class _progress:
    """A rich progress bar on standard error, when it is a terminal; otherwise nothing at all."""

    def __init__(self, total: int, enabled: bool) -> None:
        from rich.console import Console

        self.total = total
        self.console = Console(stderr=True)
        # A live bar only on an interactive terminal: never in a pipe, a file or a CI log
        # (even where FORCE_COLOR makes rich treat the log as a terminal).
        self.enabled = enabled and sys.stderr.isatty() and self.console.is_interactive
        self.bar = None

    def __enter__(self):
        if not self.enabled:
            return None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.bar = Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("loss {task.fields[loss]}"),
                            TextColumn("held-out accuracy {task.fields[acc]}"),
                            TimeElapsedColumn(), console=self.console, transient=False)
        self.bar.__enter__()
        task = self.bar.add_task("train", total=self.total, loss="-", acc="-")

        def update(done: int, total: int, loss: float, acc: float) -> None:
            self.bar.update(task, completed=done, loss=f"{loss:.4f}", acc=f"{acc:.1%}")

        return update

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
