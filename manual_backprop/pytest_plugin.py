"""The pytest plugin: ``pip install manual-backprop`` and its fixtures are there, with no import.

Registered through the ``pytest11`` entry point (``pyproject.toml``), as pytest
plugins are. It adds:

- ``backprop_case``: a :class:`~manual_backprop.Case` for each shipped network
  (``manual-backprop examples``), the test run once per network with the
  example's name as its id (``test_mine[seed-002]``). Parameters and data are
  the file's, or drawn from its ``seed``: the same numbers on every run;
- ``backprop_example``: the same, by name only (a string), for a test that
  loads or builds the case itself.

Failures of ``assert_layer_matches`` and ``assert_network_matches`` are an
``AssertionError`` whose message is the report the command line prints;
those helpers hide their own frames (``__tracebackhide__``), so pytest points
at the caller's line, not the tool's.

This module is imported by every pytest run in an environment where the
package is installed, so it imports nothing heavy until a fixture is used
(the example names are read from the folder, not through NumPy).
"""

from __future__ import annotations

from importlib import resources

import pytest


def _example_names() -> list[str]:
    folder = resources.files("manual_backprop") / "examples"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


EXAMPLES = _example_names()


@pytest.fixture(params=EXAMPLES, ids=EXAMPLES)
def backprop_example(request) -> str:
    """The name of a shipped network; the test runs once for each."""
    return request.param


@pytest.fixture
def backprop_case(backprop_example):
    """The :class:`~manual_backprop.Case` of a shipped network: its sizes, activations, loss, parameters, data."""
    from .description.catalog import load_example

    return load_example(backprop_example)
