"""A student's code, run as untrusted: in its own process, with limits, returning data only.

:class:`SandboxedCode` stands where :func:`~manual_backprop.testing.network.check_network` holds
the user's code (:func:`~manual_backprop.testing.network.judge_code`): the grader plans every
trial's inputs in its own process, and :meth:`SandboxedCode.prepare` writes them (inputs only,
never a true value) into a fresh working folder with a copy of the submission, then starts one
process for all of them (:mod:`._runner`)::

    python -I -m manual_backprop.grading._runner WORKDIR     cwd = WORKDIR, a new session,
                                                            stdin empty, stdout/stderr to files
    RLIMIT_AS     memory (default 1024 MiB)      RLIMIT_CPU   the wall-clock limit + 1 s
    RLIMIT_FSIZE  every file it writes (64 MiB)  RLIMIT_CORE  0
    wall clock    ``timeout`` (default 20 s), then the whole process group is killed

(the process sets its own limits, :func:`apply_limits`, before it imports the student's code)

What comes back is read as data: ``json.loads`` of small files, and ``np.load(allow_pickle=False)``
of arrays; nothing is unpickled, nothing is imported. A crash, a hang, ``sys.exit``, a segfault,
a huge allocation or megabytes of printing end that process, and become one line in that
student's report (:attr:`SandboxedCode.failure`); the grader goes on.

This is isolation, not a sandbox: the code runs as the grading user, can read what that user can
read (other submissions, the assignment) and can use the network. Run the grader inside a
container or a jail for that (the README's "Grade a class").
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..description.case import Case
from ..testing.network import FORMS
from ..testing.signatures import Missing, Unreadable, UserError


@dataclass(frozen=True)
class Limits:
    """What one submission's process may use."""

    timeout: float = 20.0       # seconds of wall clock, for all its trials together
    memory: int = 1024          # MiB of address space
    output: int = 64            # MiB per file it writes (its printing included)
    captured: int = 4000        # characters of its printing kept for the feedback


#: The most a result file may be (a trial's JSON); arrays are bounded by the network's shapes.
MAX_JSON = 1 << 20


class SandboxedCode:
    """``NAME`` in the submission's ``FILE.py``, run in a process of its own (see the module)."""

    def __init__(self, folder: Path, file: str, name: str, case: Case, limits: Limits):
        self.folder, self.file, self.name, self.limits = Path(folder), file, name, limits
        self.network = case.network
        self.convention = case.convention
        self.label = name
        self.kind = "function"
        self.failure: str | None = None      # the process's end, when it did not finish its work
        self.output = ""                     # what it printed (the start of it)
        self._results: list[tuple[Case, dict | None]] = []

    @property
    def form(self) -> str:
        return FORMS["object"] if self.kind in ("object", "class") else "fn(params, X, Y)"

    def setup(self) -> str | None:
        return None  # the setup (importing, instantiating) happens in the student's process

    def prepare(self, cases: list[Case]) -> None:
        """Run the code on every case's inputs in one process; keep what came back."""
        self._results = list(zip(cases, self._run(cases)))

    def call(self, params: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray):
        for i, (case, answer) in enumerate(self._results):
            if case.X is X and case.params is params:
                self._results.pop(i)
                return self._answer(answer)
        # a trial planned after the others (a follow-up batch): a process of its own
        case = Case(self.network, params, X, Y, convention=self.convention)
        return self._answer(self._run([case])[0])

    def _answer(self, answer):
        if isinstance(answer, str):
            raise UserError(self.label, answer)
        return answer

    def _read(self, work: Path, record: dict | None):
        """One trial's record as ``check_network`` takes it, its arrays read back; or the error, a str."""
        if record is None:
            return self.failure or f"{self.label} returned nothing for this trial"
        if "error" in record:
            error = str(record["error"])
            if "[Errno 27]" in error:  # EFBIG: RLIMIT_FSIZE reached (Python ignores SIGXFSZ)
                error = f"wrote more than the output limit of {self.limits.output} MiB (printing too much?): {error}"
            return error
        values = _values(work, record, self.label)
        problems = record.get("problems", {})
        notes = record.get("notes", [])
        shape = record.get("shape")
        if shape not in ("trace", "loss_grads") or not isinstance(problems, dict) or not isinstance(notes, list):
            return f"{self.label}'s results could not be read back"
        return shape, values, {str(k): str(v) for k, v in problems.items()}, [str(n) for n in notes]

    # --- the process ------------------------------------------------------------------------

    def _run(self, cases: list[Case]) -> list:
        work = Path(tempfile.mkdtemp(prefix="mbp-grade-"))
        try:
            records = self._run_in(work, cases)
            return [self._read(work, r) for r in records]
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _run_in(self, work: Path, cases: list[Case]) -> list[dict | None]:
        _copy_submission(self.folder, work, self.limits)
        trials = []
        for i, case in enumerate(cases):
            folder = _inputs(work, i, {**case.params, "X": case.X, "Y": case.Y})
            trials.append({"folder": folder, "dtype": case.network.dtype,
                           "params": {name: f"{name}.npy" for name in case.params}})
        conv = self.convention
        job = {"file": self.file, "name": self.name, "network": asdict(self.network), "trials": trials,
               "limits": asdict(self.limits),
               "convention": {"layout": conv.layout, "deltas": conv.deltas,
                              "biases": {k: list(v) for k, v in conv.biases.items()}}}
        (work / "job.json").write_text(json.dumps(job), encoding="utf-8")
        self.failure = _start(work, self.limits)
        self.output = _captured(work, self.limits.captured)
        setup = _json(work / "out" / "setup.json")
        if setup is not None:
            if setup.get("error"):
                self.failure = str(setup["error"])
                return [None] * len(cases)
            self.label, self.kind = str(setup.get("label") or self.name), str(setup.get("kind") or "function")
        elif self.failure is None:
            self.failure = f"{self.name} finished without a word (its process wrote no results)"
        return [_json(work / "out" / f"{i}.json") for i in range(len(cases))]


def _json(path: Path) -> dict | None:
    try:
        if path.stat().st_size > MAX_JSON:
            return {"error": "returned more than 1 MiB of results for one trial"}
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _captured(work: Path, limit: int) -> str:
    parts = []
    for name in ("stdout.txt", "stderr.txt"):
        try:
            with open(work / name, "rb") as f:
                text = f.read(limit + 1).decode("utf-8", errors="replace")
        except OSError:
            continue
        if text:
            parts.append(text[:limit] + (" [...]" if len(text) > limit else ""))
    return "\n".join(parts)


def apply_limits(limits: dict) -> None:
    """In the student's process, first thing (before their code is imported): its own limits, which it
    can lower but never raise again (``resource.setrlimit``; the wall clock is the grader's)."""
    import resource

    memory = int(limits["memory"]) << 20
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    cpu = int(limits["timeout"]) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    size = int(limits["output"]) << 20
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


#: What a signal that ended the student's process means, for the feedback.
SIGNALS = {
    signal.SIGSEGV: "crashed with a segmentation fault (SIGSEGV)",
    signal.SIGABRT: "aborted (SIGABRT)",
    signal.SIGBUS: "crashed (SIGBUS)",
    signal.SIGFPE: "crashed (SIGFPE)",
    signal.SIGILL: "crashed (SIGILL)",
    signal.SIGXCPU: "used more CPU time than allowed",
    signal.SIGXFSZ: "wrote more than the output limit (printing too much?)",
    signal.SIGKILL: "was killed",
}


def _start(work: Path, limits: Limits) -> str | None:
    """Run the student's process in ``work``; None when it ended normally, else what happened, one line."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work), "LANG": "C.UTF-8",
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg",
           "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    with open(work / "stdout.txt", "wb") as out, open(work / "stderr.txt", "wb") as err:
        try:
            proc = subprocess.Popen([sys.executable, "-I", "-m", "manual_backprop.grading._runner", str(work)],
                                    cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    start_new_session=True)
        except OSError as e:
            return f"could not be started ({e.strerror or e})"
        try:
            code = proc.wait(timeout=limits.timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            return f"did not finish within {limits.timeout:g} s (an infinite loop?)"
        _kill(proc)  # anything it left running in its group
    if code == 0:
        return None
    if code < 0:
        sig = signal.Signals(-code)
        what = SIGNALS.get(sig, f"was ended by {sig.name}")
        if sig == signal.SIGKILL:
            what += f" (over the {limits.memory} MiB memory limit?)"
        return what
    text = _captured(work, 2000)
    if "MemoryError" in text:
        return f"ran out of memory (the limit is {limits.memory} MiB)"
    return f"exited with code {code} before returning its results" + (" (sys.exit?)" if code else "")


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover - a process that survives SIGKILL
        pass


class SandboxedLayer:
    """A layer pair handed in (``check_layer``'s forms: ``forward``/``backward`` in ``FILE.py``), run on
    every trial's inputs in one process of its own; :meth:`runner` gives
    :func:`~manual_backprop.testing.layers.judge_layer` its ``run(trial)``."""

    def __init__(self, folder: Path, file: str, forward: str, backward: str | None, layer: str, eps: float,
                 layout: str, limits: Limits):
        self.folder, self.file, self.forward, self.backward = Path(folder), file, forward, backward
        self.layer, self.eps, self.layout, self.limits = layer, eps, layout, limits
        self.failure: str | None = None
        self.output = ""
        self.form = ""

    def runner(self, trials: list) -> Any:
        """Run the code on ``trials`` now; the ``run(trial) -> (yours, problems)`` that replays it."""
        work = Path(tempfile.mkdtemp(prefix="mbp-grade-"))
        try:
            answers = self._run_in(work, trials)
        finally:
            shutil.rmtree(work, ignore_errors=True)

        def run(trial):
            answer = answers[trial.name]
            if isinstance(answer, tuple) and len(answer) == 2 and isinstance(answer[0], str) and \
                    isinstance(answer[1], str):
                raise UserError(answer[0], answer[1])
            return answer
        return run

    def _run_in(self, work: Path, trials: list) -> dict[str, Any]:
        _copy_submission(self.folder, work, self.limits)
        listed = []
        for i, t in enumerate(trials):
            folder = _inputs(work, i, {**t.params, "x": t.x, "dout": t.dout})
            listed.append({"folder": folder, "name": t.name, "params": {n: f"{n}.npy" for n in t.params}})
        job = {"kind": "layer", "file": self.file, "forward": self.forward, "backward": self.backward,
               "layer": self.layer, "eps": self.eps, "layout": self.layout, "trials": listed,
               "limits": asdict(self.limits)}
        (work / "job.json").write_text(json.dumps(job), encoding="utf-8")
        self.failure = _start(work, self.limits)
        self.output = _captured(work, self.limits.captured)
        setup = _json(work / "out" / "setup.json")
        if setup is not None and setup.get("error"):
            self.failure = str(setup["error"])
        elif setup is None and self.failure is None:
            self.failure = "the layer finished without a word (its process wrote no results)"
        if setup is not None:
            self.form = str(setup.get("form") or "")
        out: dict[str, Any] = {}
        for i, t in enumerate(trials):
            record = _json(work / "out" / f"{i}.json") if self.failure is None else None
            if record is None:
                out[t.name] = ("forward", self.failure or "the layer returned nothing for this trial")
            elif "error" in record:
                out[t.name] = (str(record.get("function") or "forward"), str(record["error"]))
            else:
                values = _values(work, record, "the layer")
                problems = [(str(p[0]), str(p[1])) for p in record.get("problems", []) if len(p) == 2]
                out[t.name] = (values, problems)
        return out


def _values(work: Path, record: dict, label: str) -> dict[str, Any]:
    """A trial's returned values read back as data: arrays with ``allow_pickle=False``, the rest as notes."""
    values: dict[str, Any] = {}
    for key, entry in dict(record.get("values", {})).items():
        if isinstance(entry, dict) and "file" in entry:
            values[str(key)] = _load_array(work, str(entry["file"]), label)
        elif isinstance(entry, dict) and "missing" in entry:
            values[str(key)] = Missing(str(entry["missing"]))
        elif isinstance(entry, dict) and entry.get("none"):
            values[str(key)] = None
        else:
            note = entry.get("unreadable") if isinstance(entry, dict) else None
            values[str(key)] = Unreadable(str(note or f"{key} could not be read"))
    return values


def _inputs(work: Path, i: int, arrays: dict[str, np.ndarray]) -> str:
    """Trial ``i``'s inputs as ``in/<i>/<name>.npy`` in the student's folder (inputs only); the folder."""
    folder = work / "in" / str(i)
    folder.mkdir(parents=True)
    for name, value in arrays.items():
        np.save(folder / f"{name}.npy", value, allow_pickle=False)
    return f"in/{i}"


def _copy_submission(folder: Path, work: Path, limits: Limits) -> None:
    """A copy of the submission's own files (no folders, no links) into the student's working folder."""
    for item in folder.iterdir():
        if item.is_file() and not item.is_symlink() and item.stat().st_size <= limits.output << 20:
            shutil.copy2(item, work / item.name)


def _load_array(work: Path, name: str, label: str) -> Any:
    """An array the student's process wrote, read as numbers only (``allow_pickle=False``), from its folder."""
    path = (work / name).resolve()
    if work.resolve() not in path.parents:
        return Unreadable(f"{label}'s results point outside its folder")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        return Unreadable(f"{label} returned an array that cannot be read back ({type(e).__name__})")
