"""One live run per output folder.

``fdseg train``, ``fdseg predict`` and ``fdseg experiment`` hold an exclusive lock on
``OUT/.fdseg.lock`` while they write into ``OUT``. A second command on the same folder is
refused at once, in one line that names the folder and the process holding it. The lock
is an ``flock`` on an open file, so the kernel releases it when its process ends, however
it ends: a lock left by a killed run is stale by construction, and the next run takes it
over. A run that finishes removes the file, so a folder holds ``.fdseg.lock`` only while
a run writes into it, or after a killed one.

A lock that cannot be written (a full disk, a read-only folder) ends the command before
it writes anything else, in one line that names the folder; no partial lock file is left.

This module imports only :mod:`fdseg_core.errors`; every layer may use it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from fdseg_core.errors import DiskFullError, OutputNotWritableError

__all__ = ["LOCK_NAME", "RunLock", "RunLockedError"]

#: The lock file in an output folder.
LOCK_NAME = ".fdseg.lock"


class RunLockedError(FileExistsError):
    """Another live process writes into the folder (a :class:`FileExistsError`)."""


class RunLock:
    """An exclusive, non-blocking lock on an output folder for the life of a command.

    Args:
        folder: The output folder (created when missing).
        command: What holds it, for the message of the next one (``"fdseg train"``).
        shared: Take the folder together with other shared holders (the processes of
            one experiment: its shards and workers, each run under a lock of its own),
            while an exclusive holder (``train``, ``predict``) still refuses them all.

    Attributes:
        took_over: What the lock file said of a process that ended without letting go
            (a killed run; a finished one removes the file): its lock was stale, and this
            one replaced it. ``None`` otherwise.

    Raises:
        RunLockedError: (on entry) a live process holds the folder.

    Example:
        >>> with RunLock(out, command="fdseg train"):   # doctest: +SKIP
        ...     train(config)
    """

    def __init__(
        self, folder: str | os.PathLike, *, command: str = "fdseg", shared: bool = False
    ) -> None:
        self.folder = Path(folder)
        self.command = command
        self.shared = shared
        self.path = self.folder / LOCK_NAME
        self.took_over: dict | None = None
        self._fh = None
        self._created = False
        self._existed = False

    def acquire(self) -> RunLock:
        """Take the folder (see the class); a lock that cannot be written raises
        :class:`~fdseg_core.errors.DiskFullError` or
        :class:`~fdseg_core.errors.OutputNotWritableError`, naming the folder, and
        leaves the folder as it was."""
        created = not self.folder.exists()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _not_writable(self.folder, exc) from exc
        try:
            self._fh = self._lock()
        except OSError as exc:
            if isinstance(exc, RunLockedError):
                raise
            self._undo(created)
            raise _not_writable(self.folder, exc) from exc
        self._created = created
        return self

    def _undo(self, created: bool) -> None:
        """Remove a lock file this call could not complete, and the folder it made."""
        try:
            if self._fh is None and self.path.exists() and not self._existed:
                self.path.unlink()
            if created and not any(self.folder.iterdir()):
                self.folder.rmdir()
        except OSError:
            pass

    def _lock(self):
        self._existed = self.path.exists()
        while True:
            fh = open(self.path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
            try:
                mode = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
                fcntl.flock(fh.fileno(), mode | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(fh)
                fh.close()
                raise RunLockedError(
                    f"{self.folder} is in use by {_describe(holder)}; wait for it to finish or "
                    "choose another output folder"
                ) from None
            if _same_file(fh, self.path):
                break
            fh.close()  # a finishing run removed the file between our open and lock: again
        previous = _read(fh)
        if previous:
            self.took_over = previous  # its process ended without letting go: a killed run
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(
                json.dumps(
                    {
                        "pid": os.getpid(),
                        "host": socket.gethostname(),
                        "command": self.command,
                        "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    }
                )
            )
            fh.flush()
        except OSError:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            fh.close()
            self._existed = False  # the file is ours now, whatever it held: remove it
            raise
        return fh

    def release(self) -> None:
        """Let go of the folder: the lock file goes (while still locked, so that nobody
        can take a lock on a file about to vanish), and so does the folder when the lock
        made it and nothing else was written into it (a refused run)."""
        if self._fh is None:
            return
        last = True
        if self.shared:  # the file goes with the last holder: who can take it whole
            try:
                fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                last = False
        if last:
            self.path.unlink(missing_ok=True)
            if self._created and not any(self.folder.iterdir()):
                self.folder.rmdir()
        fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
        self._fh.close()
        self._fh = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _not_writable(folder: Path, exc: OSError) -> OSError:
    """The one-line error of an output folder that cannot be written."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(
            exc.errno, f"could not write into {folder}: no space left on the device"
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputNotWritableError(
            exc.errno, f"the output folder {folder} is not writable ({os.strerror(exc.errno)})"
        )
    return exc


def _same_file(fh, path: Path) -> bool:
    """Whether the open file is still the one at ``path`` (not removed and replaced)."""
    try:
        return os.fstat(fh.fileno()).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _read(fh) -> dict:
    fh.seek(0)
    try:
        data = json.loads(fh.read() or "{}")
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _describe(holder: dict) -> str:
    if not holder:
        return "another fdseg process"
    command = holder.get("command", "fdseg")
    where = f"pid {holder.get('pid')}" + (f" on {holder['host']}" if holder.get("host") else "")
    since = f", since {holder['since']}" if holder.get("since") else ""
    return f"a running {command} ({where}{since})"
