"""Atomic writes: every file fdseg writes goes through a temp file and a rename.

A write that fails or is interrupted (an exception, a full disk, a kill) never leaves a
half-written file and never destroys the previous good one: the data goes to a hidden
temp file in the target's folder (same file system), is flushed to disk, and only then
replaces the target with :func:`os.replace`. On failure the temp file is removed.

It imports only :mod:`fdseg_core.errors`; every layer may use it.
"""

from __future__ import annotations

import errno
import functools
import io
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from fdseg_core.errors import DiskFullError, OutputNotWritableError, OutputWriteError

__all__ = [
    "DiskFullError",
    "atomic_path",
    "check_output_file",
    "atomic_save_figure",
    "atomic_torch_save",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
]


_UMASK_LOCK = threading.Lock()


@functools.cache
def _new_file_mode() -> int:
    """The mode ``open()`` would give a new file (``0o666`` less the umask): temp files
    from :func:`tempfile.mkstemp` are ``0o600``, which outputs must not keep."""
    with _UMASK_LOCK:  # os.umask can only be read by setting it
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _translate(exc: OSError, path: Path) -> OSError:
    """The error of a failed write, naming the target (never the temp file)."""
    if isinstance(exc, DiskFullError | OutputWriteError | OutputNotWritableError):
        return exc
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(
            exc.errno, f"could not write {path}: no space left on the device (nothing was replaced)"
        )
    if isinstance(exc, FileNotFoundError) and not path.parent.is_dir():
        reason = f"its folder {path.parent} does not exist"
    else:
        reason = exc.strerror or str(exc)
    return OutputWriteError(exc.errno or errno.EIO, f"cannot write {path}: {reason}")


def check_output_file(path: str | os.PathLike) -> Path:
    """Refuse, before any work, a file that cannot be written: a folder in its place, or
    a folder above it that is not one or cannot be written (a read-only file system, or
    no permission). Missing folders are fine: the writer makes them.

    Returns:
        The path.

    Raises:
        IsADirectoryError: A folder is where the file would go.
        NotADirectoryError: A file is where one of its folders would go.
        OutputNotWritableError: The nearest existing folder cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"{path} is a folder: give a file name")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise NotADirectoryError(
            errno.ENOTDIR, f"cannot write {path}: {folder} is a file, not a folder"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputNotWritableError(
            errno.EACCES, f"cannot write {path}: the folder {folder} is not writable"
        )
    return path


@contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """A temp path to write to; on success it replaces ``path``.

    Use it for writers that take a file name (nibabel, matplotlib, ONNX)::

        with atomic_path(out / "seg.nii.gz") as tmp:
            nib.save(image, tmp)

    Args:
        path: The file to write.
        suffix: Ending of the temp file (writers that infer the format from the name
            need it; default: ``path``'s own suffixes).

    Raises:
        DiskFullError: The disk filled up while writing (``path`` is untouched).
        OutputWriteError: Any other failure to write, naming ``path`` (untouched).
    """
    path = Path(path)
    ending = suffix if suffix is not None else "".join(path.suffixes) or ".tmp"
    try:
        fd, name = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=f".tmp{ending}", dir=path.parent
        )
    except OSError as exc:  # named by the user's path, not the temp file's
        raise _translate(exc, path) from exc
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync(tmp)
        # a replaced file keeps its mode; a new one gets the mode open() would give it
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else _new_file_mode())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        translated = _translate(exc, path)
        if translated is exc:
            raise
        raise translated from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write(fh)`` on a binary file handle, then replace ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        write(fh)
        fh.flush()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes atomically."""
    atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 text atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` atomically: an interrupted save never leaves a half-written
    checkpoint nor destroys the previous one.

    The checkpoint is serialised in memory first and then written: ``torch.save``'s zip
    writer turns a full disk into a ``RuntimeError`` ("unexpected pos"), while a plain
    write reports it as what it is (:class:`DiskFullError`).
    """
    import torch  # the writer of this one format; everything else here is stdlib

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getbuffer())


def atomic_save_figure(fig: Any, path: str | os.PathLike, **savefig: Any) -> Path:
    """Save a matplotlib figure atomically (the format from ``path``'s suffix).

    Returns:
        ``path``.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or None, **savefig)
    return path
