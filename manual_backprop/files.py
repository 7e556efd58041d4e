"""Writing output files so that a failed or interrupted run never leaves half a file.

Every command that writes a file goes through :func:`write_atomically` (or
:func:`save_figure_atomically` for a matplotlib figure): the data goes to a
temporary file beside the target, is flushed to disk, and only then takes the
target's name with :func:`os.replace`, which is atomic within one folder. A
reader sees the old file or the new one, never a truncated one; a failure
removes the temporary file and leaves the old file as it was. Killing the
process outright (``SIGKILL``) can leave a ``.NAME.*.tmp`` file behind, never
a truncated ``NAME``.

:func:`check_writable_folder` tells, before any work is done, whether an
output folder can be created and written to. Failures are
:class:`~manual_backprop.errors.InputError` with one line,
``cannot write to PATH: REASON``.

A leaf module: it imports nothing from the package but :mod:`manual_backprop.errors`.
"""

from __future__ import annotations

import io
import os
import secrets
from pathlib import Path
from typing import Any

from .errors import InputError

__all__ = ["check_writable_folder", "save_figure_atomically", "write_atomically"]


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _temporary(path: Path) -> tuple[Path, int]:
    """A new file beside ``path`` (same folder, so ``os.replace`` is atomic), opened for writing.

    Created with mode 0o666 so that the umask applies, as for any ordinary new file.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return tmp, os.open(tmp, flags, 0o666)
        except FileExistsError:  # pragma: no cover - 32 random bits collided
            continue


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable where the platform allows it (best effort)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomically(path: str | os.PathLike[str], data: bytes | str, *, encoding: str = "utf-8") -> Path:
    """Write ``data`` (text is encoded with ``encoding``) to ``path`` all at once, or not at all.

    The bytes go to a temporary file in the same folder, are flushed and
    synced, and the file is then renamed onto ``path`` with :func:`os.replace`.
    On any failure, including ``KeyboardInterrupt``, the temporary file is
    removed and ``path`` keeps its old content (or stays absent). An
    :class:`OSError` becomes an :class:`InputError`:
    ``cannot write to PATH: REASON``. Returns ``path`` as a :class:`Path`.
    """
    path = Path(path)
    payload = data.encode(encoding) if isinstance(data, str) else bytes(data)
    try:
        if path.is_dir():
            raise InputError(f"cannot write to {path}: it is a folder")
        tmp, fd = _temporary(path)
    except OSError as exc:
        raise InputError(f"cannot write to {path}: {_reason(exc)}") from None
    try:
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise InputError(f"cannot write to {path}: {_reason(exc)}") from None
        raise
    _fsync_folder(path.parent)
    return path


def save_figure_atomically(fig: Any, path: str | os.PathLike[str], **savefig_kwargs: Any) -> Path:
    """Save a matplotlib figure to ``path`` as :func:`write_atomically` writes bytes.

    The figure is rendered into memory first (in the format ``path``'s suffix
    names, unless ``format=`` is given), so a failure while rendering touches
    no file at all; the bytes are then written atomically.
    """
    path = Path(path)
    savefig_kwargs.setdefault("format", path.suffix.lstrip(".").lower() or "png")
    buffer = io.BytesIO()
    fig.savefig(buffer, **savefig_kwargs)
    return write_atomically(path, buffer.getvalue())


def check_writable_folder(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` (and its parents) if needed and prove a file can be written in it.

    Call it before the work whose results go there, so that a bad output
    folder costs nothing. Raises :class:`InputError`
    ``cannot write to FOLDER: REASON`` when it cannot be created or written.
    """
    folder = Path(folder)
    try:
        if folder.exists() and not folder.is_dir():
            raise InputError(f"cannot write to {folder}: it is a file, not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        tmp, fd = _temporary(folder / "write-test")
    except OSError as exc:
        raise InputError(f"cannot write to {folder}: {_reason(exc)}") from None
    os.close(fd)
    try:
        os.unlink(tmp)
    except OSError:  # pragma: no cover - created a moment ago
        pass
    return folder
