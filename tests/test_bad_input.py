"""Bad input gets exit code 2 and one clear line: never a traceback, never a result.

Every file in ``tests/bad_inputs/`` is one mistake a user can make. Its first
lines say what is wrong (``# Bad input: ...``) and which words the error must
contain (``# expect: ...``): what is wrong and where (the file, the table, the
tensor, the index). The real command line runs on each file in a subprocess,
as a user would run it; the Python API must raise :class:`InputError` with
the very same line.
"""

from __future__ import annotations

import importlib.util
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from manual_backprop import InputError, Network, load_case, make_case, references
from manual_backprop.checking.checker import check
from manual_backprop.description.catalog import load_example

BAD = Path(__file__).parent / "bad_inputs"
FILES = sorted(BAD.glob("*.toml"))
PREFIX = "manual-backprop: "
HAS_VALIDATE = importlib.util.find_spec("manual_backprop.cli.validate") is not None


def expectations(path: Path) -> list[str]:
    """The ``# expect:`` lines of a bad file (read as Latin-1: one file is deliberately not UTF-8)."""
    lines = path.read_bytes().decode("latin-1").splitlines()
    return [line.split("# expect:", 1)[1].strip() for line in lines if line.startswith("# expect:")]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m manual_backprop ARGS`` run from the bad-input folder, as a user would."""
    return subprocess.run([sys.executable, "-m", "manual_backprop", *args], cwd=BAD, env=env,
                          capture_output=True, text=True, timeout=300)


def one_line_exit_2(result: subprocess.CompletedProcess) -> str:
    """Assert exit 2, nothing on stdout, one line on stderr and no traceback; return the message."""
    assert result.returncode == 2, f"exit {result.returncode}: {result.stderr}"
    assert result.stdout == "", f"stdout must stay empty on bad input, got {result.stdout!r}"
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {result.stderr}"
    assert lines[0].startswith(PREFIX)
    return lines[0][len(PREFIX):]


def api_message(name: str) -> str:
    """The InputError the Python API raises for a bad file (loading it, then checking it)."""
    with pytest.raises(InputError) as info:
        check(load_case(name), against=["fd"])
    return str(info.value)


def test_the_battery_has_one_file_per_case_and_every_file_says_what_to_expect():
    assert len(FILES) >= 50
    for path in FILES:
        assert path.read_bytes().startswith(b"# Bad input: "), path.name
        assert expectations(path), f"{path.name} has no '# expect:' line"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_a_bad_file_exits_2_with_one_line_naming_the_mistake_and_the_api_raises_the_same_line(path, monkeypatch):
    message = one_line_exit_2(cli("check", path.name))
    assert message.startswith(f"{path.name}: ")
    for expected in expectations(path):
        assert expected in message
    monkeypatch.chdir(BAD)
    assert steady(api_message(path.name)) == steady(message)


def steady(message: str) -> str:
    """A message without the memory still free, which changes from one moment to the next."""
    return re.sub(r"the [0-9.e+]+ GiB this process may use", "the ... GiB this process may use", message)


@pytest.mark.parametrize("name", ["malformed_toml", "overflow_in_forward"])
def test_json_mode_prints_nothing_on_stdout_for_bad_input(name):
    one_line_exit_2(cli("check", f"{name}.toml", "--json"))


@pytest.mark.skipif(not HAS_VALIDATE, reason="the validate command is not built yet")
@pytest.mark.parametrize("name", ["nan_in_claims", "inf_in_claims", "claimed_wrong_shape", "unknown_claimed_tensor_name",
                                  "malformed_toml", "class_label_negative", "not_utf8", "claimed_loss_as_string",
                                  "claimed_gradient_with_strings", "claimed_gradient_with_one_string",
                                  "float_literal_too_large_in_claims", "integer_claim_too_large",
                                  "integer_claim_too_large_in_array"])
def test_validate_on_a_bad_file_exits_2_with_the_same_line_as_check(name):
    message = one_line_exit_2(cli("validate", f"{name}.toml"))
    assert message.startswith(f"{name}.toml: ")
    for expected in expectations(BAD / f"{name}.toml"):
        assert expected in message


def test_a_title_with_brackets_is_printed_as_written_not_read_as_markup():
    from manual_backprop import parse_case
    from manual_backprop.cli.check import render

    case = parse_case('title = "W[1] and [/b] [bold"\n[network]\nsizes = [2, 1]\nactivations = ["identity"]\n'
                      'loss = "half_mse"\n', "net[1].toml")
    out = io.StringIO()
    render(check(case, against=["fd"]), file=out)
    assert out.getvalue().splitlines()[0] == "W[1] and [/b] [bold"
    assert "net[1].toml" in out.getvalue()


def test_a_file_that_does_not_exist_is_named():
    assert one_line_exit_2(cli("check", "no_such_network.toml")) == "no_such_network.toml: no such file"


def test_a_directory_is_not_a_network_file():
    assert one_line_exit_2(cli("check", ".")) == ".: is a directory, not a network file"


def test_an_unknown_reference_in_against_is_named_with_the_known_ones():
    message = one_line_exit_2(cli("check", "--example", "seed-002", "--against", "torch,tensorflow"))
    assert message == "unknown reference 'tensorflow'; known: torch, jax, fd"
    with pytest.raises(InputError, match="^unknown reference 'tensorflow'; known: torch, jax, fd$"):
        check(load_example("seed-002"), against=["torch", "tensorflow"])


def test_inline_sizes_that_are_not_integers_are_refused():
    message = one_line_exit_2(cli("check", "--sizes", "a,b", "--activations", "relu", "--loss", "mse"))
    assert message == "--sizes must be integers separated by commas, got 'a,b'"


@pytest.mark.parametrize("batch", ["0", "-3"])
def test_an_inline_batch_of_zero_or_less_is_refused(batch):
    message = one_line_exit_2(cli("check", "--sizes", "2,1", "--activations", "identity", "--loss", "mse",
                                  "--batch", batch))
    assert message.startswith(f"<options>: batch must be a positive integer, got {batch}")
    with pytest.raises(InputError) as info:
        make_case(Network((2, 1), ("identity",), "mse"), batch=int(batch))
    assert str(info.value) == message


def test_an_inline_unknown_activation_is_named_with_its_layer():
    message = one_line_exit_2(cli("check", "--sizes", "2,3,1", "--activations", "relu,swish", "--loss", "mse"))
    assert "unknown activation 'swish' for layer 2" in message


def test_an_unknown_example_lists_the_known_ones():
    message = one_line_exit_2(cli("check", "--example", "seed-999"))
    assert message.startswith("unknown example 'seed-999'; known: ") and "seed-002" in message


def test_a_file_and_inline_options_together_are_refused():
    message = one_line_exit_2(cli("check", "empty_batch.toml", "--sizes", "2,1"))
    assert message.startswith("give one of FILE, --example or inline options")


@pytest.mark.parametrize("args", [["--dtype", "float16"], ["--no-such-option"], ["--batch", "many"]])
def test_a_bad_option_is_one_line_not_argparse_usage(args):
    message = one_line_exit_2(cli("check", *args))
    assert message


def _without(package: str, tmp_path: Path) -> dict[str, str]:
    """An environment in which ``import package`` fails and ``find_spec(package)`` is None.

    A ``sitecustomize`` on PYTHONPATH puts None in ``sys.modules[package]``: Python's own
    way of marking a module as unimportable (a shim ``package.py`` would not do: find_spec
    would find the shim).
    """
    (tmp_path / "sitecustomize.py").write_text(f"import sys\nsys.modules[{package!r}] = None\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path), env.get("PYTHONPATH")]))
    return env


@pytest.mark.parametrize("package,reference", [("torch", "torch"), ("jax", "jax")])
def test_a_reference_asked_for_but_not_installed_exits_2_with_the_install_hint(package, reference, tmp_path):
    env = _without(package, tmp_path)
    probe = subprocess.run([sys.executable, "-c", f"import importlib.util as u; print(u.find_spec({package!r}))"],
                           env=env, capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip() == "None"  # the simulation works: the package looks absent
    message = one_line_exit_2(cli("check", "--example", "seed-002", "--against", reference, env=env))
    assert message == f"reference {reference!r} is not installed: {references.INSTALL_HINTS[reference]}"


def test_a_reference_not_installed_raises_the_same_InputError_in_the_api(monkeypatch):
    real = references.is_installed
    monkeypatch.setattr(references, "is_installed", lambda name: name != "torch" and real(name))
    with pytest.raises(references.MissingReference) as info:
        check(load_example("seed-002"), against=["torch"])
    assert isinstance(info.value, InputError)
    assert str(info.value) == f"reference 'torch' is not installed: {references.INSTALL_HINTS['torch']}"


def test_a_reference_not_installed_and_not_asked_for_is_skipped_and_said_so(monkeypatch):
    real = references.is_installed
    monkeypatch.setattr(references, "is_installed", lambda name: name not in ("torch", "jax") and real(name))
    report = check(load_example("seed-002"))
    assert report.references == ["fd"]
    assert set(report.skipped) == {"torch", "jax"}
    assert "not installed" in report.skipped["torch"]
    assert report.ok


def test_arrays_of_the_wrong_dtype_are_refused_by_the_api_not_cast():
    net = Network((2, 1), ("identity",), "half_mse")
    X = np.ones((3, 2), np.float32)
    with pytest.raises(InputError, match=r"^<options>: X is float32 but the network is float64; cast it explicitly"):
        make_case(net, X=X, Y=np.zeros((3, 1)))
