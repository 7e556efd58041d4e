"""The ``validate --html`` page of seed 003's derivation, opened in a real headless browser.

Debian's ``chromium`` (``.ci/run`` installs it when it is missing). The page must load with no
console message at all (it has no script: any message is an error, a failed load or a warning),
its DOM must hold the drawing and the table with seed 003's verdicts (``manual-backprop validate
--example seed-003-derivation``: dZ1 wrong on its own, dW1, db1, dX carried), and the screenshot
must be a PNG of the window's size. ``MANUAL_BACKPROP_SAVE_SCREENSHOT=1`` keeps it as
``docs/validate_page.png`` (the README's picture). A missing browser fails this test, with the command that installs it: it is
never skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from manual_backprop.cli import main

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "docs" / "validate_page.png"
WINDOW = (1400, 2000)
SEED_003 = {"dZ1": "own", "dW1": "carried", "db1": "carried", "dX": "carried", "Z1": "right", "dA1": "right"}
#: The words of those verdicts, as the terminal prints them; each chip of the drawing carries them.
WORDS = {"dZ1": "dZ1 (1, 4): WRONG: own error (2 of 4)", "dW1": "dW1 (3, 4): wrong: carried from dZ1 (6 of 12)",
         "db1": "db1 (4,): wrong: carried from dZ1 (2 of 4)", "dX": "dX (1, 3): wrong: carried from dZ1 (3 of 3)",
         "Z1": "Z1 (1, 4): right"}


def browser() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("no chromium on the PATH: install Debian's package (apt-get install -y chromium); "
                    ".ci/run does it", pytrace=False)
    return found


def open_page(url: str, screenshot: Path) -> tuple[str, list[str]]:
    """Load ``url`` headless: the DOM after load, and every console message Chromium logged."""
    run = subprocess.run(
        [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
         "--enable-logging=stderr", "--v=0", f"--window-size={WINDOW[0]},{WINDOW[1]}",
         f"--screenshot={screenshot}", "--dump-dom", url],
        capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout, [line for line in run.stderr.splitlines() if ":CONSOLE" in line]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_the_console_check_sees_an_error(tmp_path):
    """The check below can fail: a page with a script error logs it, and it is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><script>console.error('boom'); nope();</script></body></html>")
    _, console = open_page(bad.as_uri(), tmp_path / "bad.png")
    assert any("boom" in line for line in console) and any("nope is not defined" in line for line in console)


def test_the_validate_page_loads_cleanly_in_chromium(tmp_path):
    page = tmp_path / "validate.html"
    assert main(["validate", "--example", "seed-003-derivation", "--html", str(page)]) == 1  # a wrong claim
    text = page.read_text(encoding="utf-8")
    # self-contained: nothing to fetch
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|@import|url\(""", text)
    shot = tmp_path / "validate.png"
    dom, console = open_page(page.as_uri(), shot)
    assert console == [], "\n".join(console)
    assert "<svg" in dom and 'class="mb-table"' in dom
    rows = dict(re.findall(r'<tr id="([^"]+)"[^>]*>.*?data-kind="([a-z_]+)"', dom, flags=re.S))
    assert {n: rows[n] for n in SEED_003} == SEED_003
    drawing = dom[dom.index("<svg"):dom.index("</svg>")]
    for name, words in WORDS.items():  # each tensor on the drawing, with its verdict (its hover text)
        assert words in drawing, name
    assert "◀ first" in drawing
    assert png_size(shot) == WINDOW
    if os.environ.get("MANUAL_BACKPROP_SAVE_SCREENSHOT"):  # refresh the README's picture
        shutil.copyfile(shot, SCREENSHOT)
