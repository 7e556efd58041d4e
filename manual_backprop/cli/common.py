"""Options shared by the subcommands: which case to run, and how to print."""

from __future__ import annotations

import argparse
import json
import math
import sys
import unicodedata
from typing import Any

from ..description.case import Case, make_case
from ..description.catalog import DEFAULT_EXAMPLE, load_example
from ..description.netfile import load_case
from ..description.network import Network
from ..errors import InputError
from ..kernels import ACTIVATIONS, LOSSES

INLINE = ("sizes", "activations", "loss", "reduction", "batch", "seed")
NORM_HELP = ("one per Linear layer: none, batchnorm, layernorm (between the Linear part and the activation); "
             "overrides a file's [network] norms")


def add_case_options(p: argparse.ArgumentParser, default_note: str = "the seed-002 network") -> None:
    """FILE, --example NAME, or the network inline (--sizes ... --loss ...)."""
    p.add_argument("file", nargs="?", metavar="FILE", help=f"a network file (TOML); default: {default_note}")
    p.add_argument("--example", metavar="NAME", help="a shipped example (see `manual-backprop examples`)")
    g = p.add_argument_group("network inline (instead of FILE)")
    g.add_argument("--sizes", metavar="N0,N1,...", help="widths, input first, e.g. 784,256,10")
    g.add_argument("--activations", metavar="A1,A2,...", help="one per Linear layer: " + ", ".join(ACTIVATIONS))
    g.add_argument("--loss", help=", ".join(LOSSES))
    g.add_argument("--reduction", help="mean (default) or sum")
    g.add_argument("--batch", type=int, help="rows of random data (default 4)")
    g.add_argument("--seed", type=int, help="seed for random parameters and data (default 0)")
    p.add_argument("--dtype", choices=("float64", "float32"), help="override the network's dtype")
    p.add_argument("--norms", metavar="N1,N2,...", help=NORM_HELP)
    p.add_argument("--eps", type=float, help="the norms' eps, added to the variance inside the root (default 1e-5)")
    p.add_argument("--layout", choices=("row", "column"),
                   help="how the tensors are written: row (one sample per row, Z = X @ W + b; the default) or "
                        "column (one sample per column, Z = W @ X + b)")
    p.add_argument("--deltas", choices=("gradient", "per_sample"),
                   help="where the mean's 1/N lives: gradient (every dZ, dA is dL/d·; the default) or per_sample "
                        "(dZ, dA summed over samples, the 1/N applied in dW and db)")
    add_l2_options(p)


def add_l2_options(p: argparse.ArgumentParser) -> None:
    """``--l2 λ`` and ``--l2-convention``: an L2 penalty added to the loss (the file's [regularization])."""
    p.add_argument("--l2", type=float, metavar="LAMBDA",
                   help="add the L2 penalty f·λ·Σ‖W‖² to the loss (overrides the file's [regularization] l2)")
    p.add_argument("--l2-convention", choices=("half", "full"),
                   help="half: ½λΣ‖W‖², gradient λW (default); full: λΣ‖W‖², gradient 2λW")


def case_from_args(args: argparse.Namespace, default_example: str = DEFAULT_EXAMPLE,
                   inline_options: tuple[str, ...] = INLINE) -> Case:
    """The case the options name (FILE, --example, the network inline, or ``default_example``).

    Mixing a FILE, --example and inline options is an error; ``inline_options`` are the
    options that describe a network inline for this subcommand.
    """
    inline = [k for k in inline_options if getattr(args, k, None) is not None]
    given = [x for x in (args.file and "FILE", args.example and "--example",
                         inline and "inline options (--" + ", --".join(inline) + ")") if x]
    if len(given) > 1:
        raise InputError(f"give one of FILE, --example or inline options, not {' and '.join(given)}")
    overrides = {"dtype": args.dtype} if args.dtype else {}
    view = {k: getattr(args, k, None) for k in ("layout", "deltas") if getattr(args, k, None) is not None}
    overrides.update(view)
    norms = getattr(args, "norms", None)
    if norms is not None:
        overrides["norms"] = split_list(norms, "--norms")
    if getattr(args, "eps", None) is not None:
        overrides["eps"] = args.eps
    l2, convention = getattr(args, "l2", None), getattr(args, "l2_convention", None)
    if l2 is not None and not (math.isfinite(l2) and l2 >= 0):
        raise InputError(f"--l2 must be a finite number >= 0 (λ of the L2 penalty), got {l2!r}")
    if convention is not None and l2 is None and not (args.file or args.example):
        raise InputError("--l2-convention needs --l2 (the λ of the penalty)")
    overrides.update({k: v for k, v in (("l2", l2), ("convention", convention)) if v is not None})
    overrides = overrides or None
    if args.file:
        return load_case(args.file, overrides)
    if args.example:
        return load_example(args.example, overrides)
    if inline:
        missing = [k for k in ("sizes", "activations", "loss") if getattr(args, k) is None]
        if missing:
            raise InputError("inline network needs --" + ", --".join(missing))
        sizes = _int_list(args.sizes, "--sizes")
        acts = split_list(args.activations, "--activations")
        network = Network(tuple(sizes), tuple(acts), args.loss.strip(), (args.reduction or "mean").strip(),
                          args.dtype or "float64", l2=0.0 if l2 is None else l2, l2_convention=convention or "half",
                          norms=tuple(overrides.get("norms", ()) if overrides else ()),
                          eps=overrides.get("eps") if overrides else None)
        seed, batch = getattr(args, "seed", None), getattr(args, "batch", None)
        return make_case(network, seed=seed if seed is not None else 0, batch=batch if batch is not None else 4,
                         **view)
    return load_example(default_example, overrides)


def split_list(text: str, option: str) -> list[str]:
    """``"relu, softmax"`` -> ``["relu", "softmax"]``; an empty entry (``"relu,,softmax"``) is an error."""
    items = [x.strip() for x in text.split(",")]
    if "" in items:
        where = "is empty" if len(items) == 1 else f"has an empty entry at position {items.index('') + 1}"
        raise InputError(f"{option} {where} in {text!r}; separate the entries with single commas")
    return items


def _int_list(text: str, option: str) -> list[int]:
    items = split_list(text, option)
    try:
        values = [int(x) for x in items]
    except ValueError:
        raise InputError(f"{option} must be integers separated by commas, got {text!r}") from None
    return values


def printable(text: str) -> str:
    """The user's text (a title, a path) made safe to print on a terminal.

    Control characters (an escape sequence that clears the screen, a carriage return that
    overwrites the line, a newline), the invisible bidirectional overrides and the line
    separators are shown as ``\\x1b``, ``\\u202e``: visible, and inert.
    """
    return "".join(_escape(ch) if _unsafe(ch) else ch for ch in text) if any(map(_unsafe, text)) else text


#: Bidirectional embeddings, overrides and isolates: they reorder what follows them on screen.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _unsafe(ch: str) -> bool:
    return ch in _BIDI or unicodedata.category(ch) in ("Cc", "Zl", "Zp")


def _escape(ch: str) -> str:
    n = ord(ch)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}"


def clean_json(value: Any) -> Any:
    """JSON has no NaN or Infinity: write them as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    return value


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(clean_json(obj), indent=2) + "\n")
