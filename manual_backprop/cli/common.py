"""Options shared by the subcommands: which case to run, and how to print."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from ..description.case import Case, make_case
from ..description.catalog import DEFAULT_EXAMPLE, load_example
from ..description.netfile import load_case
from ..description.network import Network
from ..errors import InputError
from ..kernels import ACTIVATIONS, LOSSES

INLINE = ("sizes", "activations", "loss", "reduction", "batch", "seed")


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


def case_from_args(args: argparse.Namespace) -> Case:
    """The case the options name. Mixing a FILE, --example and inline options is an error."""
    inline = [k for k in INLINE if getattr(args, k, None) is not None]
    given = [x for x in (args.file and "FILE", args.example and "--example",
                         inline and "inline options (--" + ", --".join(inline) + ")") if x]
    if len(given) > 1:
        raise InputError(f"give one of FILE, --example or inline options, not {' and '.join(given)}")
    overrides = {"dtype": args.dtype} if args.dtype else None
    if args.file:
        return load_case(args.file, overrides)
    if args.example:
        return load_example(args.example, overrides)
    if inline:
        missing = [k for k in ("sizes", "activations", "loss") if getattr(args, k) is None]
        if missing:
            raise InputError("inline network needs --" + ", --".join(missing))
        sizes = _int_list(args.sizes, "--sizes")
        acts = [a.strip() for a in args.activations.split(",") if a.strip()]
        network = Network(tuple(sizes), tuple(acts), args.loss.strip(), (args.reduction or "mean").strip(),
                          args.dtype or "float64")
        return make_case(network, seed=args.seed if args.seed is not None else 0,
                         batch=args.batch if args.batch is not None else 4)
    return load_example(DEFAULT_EXAMPLE, overrides)


def _int_list(text: str, option: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{option} must be integers separated by commas, got {text!r}") from None


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
