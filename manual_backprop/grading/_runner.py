"""The student's process: run their code on the trials' inputs, write back data only.

Started by :mod:`.sandbox` as ``python -I -m manual_backprop.grading._runner WORKDIR``, in a
working folder that holds a copy of the submission, the inputs (``in/<trial>/<name>.npy``) and
``job.json``; it never holds a true value. For each trial it calls the code the way
:func:`~manual_backprop.testing.network.check_network` does (the same forms, on copies), and
writes what came back as ``out/<trial>/<name>.npy`` (``np.save(allow_pickle=False)``: numbers
only) and ``out/<trial>.json`` (the form, the names, the problems). Whatever the code raises
is written as the trial's ``error``; ``sys.exit`` too. The grader reads nothing else.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np


def _load(path: Path, *names: str):
    """``names`` from the student's file, which is executed once (its folder first on ``sys.path``)."""
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(f"_submission_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in names:
        if not hasattr(module, name):
            raise AttributeError(f"{path.name} defines no {name!r}")
    found = [getattr(module, name) for name in names]
    return found[0] if len(found) == 1 else found


def _write(path: Path, obj) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj), encoding="utf-8")
    os.replace(tmp, path)


def _save(out: Path, i: int, values: dict) -> dict:
    """What trial ``i`` returned, as data: each array as ``out/<i>/v<k>.npy`` (numbers only), anything else
    as why it is not one (``{"none": true}``, ``{"missing": ...}``, ``{"unreadable": ...}``)."""
    from ..testing.signatures import Missing

    (out / str(i)).mkdir(exist_ok=True)
    saved: dict = {}
    for key, value in values.items():
        if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            np.save(out / str(i) / f"v{len(saved)}.npy", value, allow_pickle=False)
            saved[key] = {"file": f"out/{i}/v{len(saved)}.npy"}
        elif isinstance(value, Missing):
            saved[key] = {"missing": value.note}
        elif value is None:
            saved[key] = {"none": True}
        else:
            saved[key] = {"unreadable": getattr(value, "note", f"{key} is not an array of numbers")}
    return saved


def _arrays(folder: Path, files: dict) -> dict:
    return {k: np.load(folder / v, allow_pickle=False) for k, v in files.items()}


def main(workdir: str) -> int:
    from ..description.convention import Convention
    from ..description.network import Network
    from ..testing.network import UserCode
    from ..testing.signatures import UserError, exception

    from .sandbox import apply_limits

    root = Path(workdir)
    job = json.loads((root / "job.json").read_text(encoding="utf-8"))
    apply_limits(job["limits"])
    out = root / "out"
    out.mkdir(exist_ok=True)
    if job.get("kind") == "layer":
        return _layer(root, job, out)
    net = job["network"]
    network = Network(**{k: tuple(v) if isinstance(v, list) else v for k, v in net.items()})
    view = job["convention"]
    convention = Convention(view["layout"], view["deltas"], {k: tuple(v) for k, v in view["biases"].items()})
    try:
        fn = _load(root / job["file"], job["name"])
    except SystemExit as e:
        _write(out / "setup.json", {"error": f"importing {job['file']} called sys.exit({e.code!r})"})
        return 0
    except BaseException as e:  # noqa: BLE001  (the student's import: anything goes)
        _write(out / "setup.json", {"error": f"importing {job['file']} raised {exception(e)}"})
        return 0
    try:
        code = UserCode(fn, network, job["name"], convention)
        error = code.setup()
    except SystemExit as e:
        error = f"{job['name']} called sys.exit({e.code!r}) while being set up"
    except BaseException as e:  # noqa: BLE001
        error = f"{job['name']} is not a recognised form: {exception(e)}"
    _write(out / "setup.json", {"error": error, "label": getattr(code, "label", job["name"]) if error is None else
                                job["name"], "form": code.form if error is None else "", "kind":
                                code.kind if error is None else ""})
    if error is not None:
        return 0
    for i, trial in enumerate(job["trials"]):
        folder = root / trial["folder"]
        code.network = Network(**{**{k: tuple(v) if isinstance(v, list) else v for k, v in net.items()},
                                  "dtype": trial["dtype"]})
        params = _arrays(folder, trial["params"])
        X, Y = np.load(folder / "X.npy", allow_pickle=False), np.load(folder / "Y.npy", allow_pickle=False)
        record: dict = {}
        try:
            shape, values, problems, notes = code.call(params, X, Y)
        except UserError as e:
            record["error"] = str(e)
        except SystemExit as e:
            record["error"] = f"{code.label} called sys.exit({e.code!r})"
        else:
            record.update(shape=shape, values=_save(out, i, values), problems=problems, notes=notes)
        _write(out / f"{i}.json", record)
    return 0


def _layer(root: Path, job: dict, out: Path) -> int:
    """A layer pair (``check_layer``'s forms) on each trial: its ``out`` and gradients, as data."""
    from ..description.convention import Convention
    from ..testing.layers import LAYERS, Trial, _run_user
    from ..testing.signatures import UserError, exception, layer_calls

    spec = LAYERS[job["layer"]]
    try:
        if job.get("backward"):
            forward, backward = _load(root / job["file"], job["forward"], job["backward"])
        else:
            forward, backward = _load(root / job["file"], job["forward"]), None
        calls = layer_calls(forward, backward, spec.name, spec.linear, spec.norm, float(job["eps"]))
    except SystemExit as e:
        _write(out / "setup.json", {"error": f"importing {job['file']} called sys.exit({e.code!r})"})
        return 0
    except BaseException as e:  # noqa: BLE001
        _write(out / "setup.json", {"error": f"{job['file']}: {exception(e)}"})
        return 0
    _write(out / "setup.json", {"error": None, "form": calls.form})
    view = Convention(job["layout"])
    for i, trial in enumerate(job["trials"]):
        folder = root / trial["folder"]
        t = Trial(trial["name"], np.load(folder / "x.npy", allow_pickle=False), _arrays(folder, trial["params"]),
                  np.load(folder / "dout.npy", allow_pickle=False), eps=float(job["eps"]))
        record: dict = {}
        try:
            named, problems = _run_user(calls, spec, t, view)
        except UserError as e:
            record["error"], record["function"] = str(e), e.function
        except SystemExit as e:
            record["error"], record["function"] = f"the layer called sys.exit({e.code!r})", "forward"
        else:
            record.update(values=_save(out, i, named), problems=[list(p) for p in problems])
        _write(out / f"{i}.json", record)
    return 0


if __name__ == "__main__":  # pragma: no cover - run in the student's process
    sys.exit(main(sys.argv[1]))
