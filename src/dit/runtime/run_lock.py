"""One process per run folder: the folder is made with one-line errors, then locked.

Knows nothing about DiT. ``RunLock.acquire(folder)`` creates the folder (a file in the way, a
parent that is a file, no permission, a read-only file system: one-line ``UserError``s) and takes
an advisory lock on ``<folder>/run.lock``, a small JSON file naming its owner (host, pid, start
time, command). A second process asking for the same folder stops at once and is told who holds it.

The lock is a POSIX record lock (``fcntl.lockf``) on that file:
* the kernel drops it the moment its process dies, even on SIGKILL, so a lock file left behind
  by a killed run is *stale* exactly when its kernel lock is free. Such a lock is taken over
  (its previous owner is reported by :attr:`RunLock.stale_owner`); nothing has to be deleted by hand.
* it is not inherited by ``fork``, so DataLoader workers never keep a dead run's folder locked.
* it also works between hosts on NFS (lockd), where ``flock`` may not.
* the only owner that can hold the kernel lock while its pid is gone is a process of another pid
  namespace (a container on the same host name); that case is reported with what to do.

A clean release deletes the file (the lock is still held while it is deleted, and a process that
locked the old, deleted file notices and retries on the new one). Under torchrun only rank 0 takes
the lock; the other ranks share it (see ``dit.train``).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Optional

from dit.errors import UserError
from dit.runtime.distributed import DistInfo, on_main_rank

LOCK_NAME = "run.lock"


def make_run_dir(folder: str | os.PathLike, flag: str = "--results-dir") -> bool:
    """Create ``folder`` (and its parents); True when it did not exist before.

    Every way this can fail is the user's to fix and becomes one line naming the path.
    """
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file, not a folder; pass a folder path (it is created if missing)")
    existed = path.is_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a dangling symlink or a race with another process creating a file there
        raise UserError(f"{flag} {path} exists and is not a folder; pass a folder path") from None
    except NotADirectoryError:
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), path.parent)
        raise UserError(f"{flag} {path} cannot be made: {blocker} is a file, not a folder; pass another path") from None
    except OSError as e:
        raise UserError(f"{flag} {path} cannot be made: {e.strerror or e}; pick a folder you can write to") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path} is not writable; fix its permissions or pick another folder")
    return not existed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _describe(owner: dict[str, Any]) -> str:
    started = owner.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    return f"pid {owner.get('pid', '?')} on host {owner.get('host', '?')}, started {when}"


def _read_owner(fd: int) -> dict[str, Any]:
    """The owner record in the lock file (empty when it is empty or unreadable)."""
    try:
        raw = os.pread(fd, 64 * 1024, 0)
        first = raw.split(b"\n", 1)[0].strip()  # one JSON line
        owner = json.loads(first.decode("utf-8")) if first else {}
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


class RunLock:
    """The held lock of one run folder; :meth:`release` (or process death) frees it."""

    def __init__(self, folder: Path, fd: int, created: bool, stale_owner: Optional[dict[str, Any]]):
        self.folder = folder
        self.path = folder / LOCK_NAME
        self._fd: Optional[int] = fd
        self.created_folder = created
        self.stale_owner = stale_owner  # the record of a dead run whose lock was taken over

    @classmethod
    def acquire(cls, folder: str | os.PathLike, flag: str = "--results-dir") -> "RunLock":
        """Make ``folder`` and lock it, or raise a one-line ``UserError`` naming the owner."""
        folder = Path(folder)
        created = make_run_dir(folder, flag)
        path = folder / LOCK_NAME
        for _ in range(20):  # retried only when a releasing owner deleted the file under us
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as e:
                raise UserError(
                    f"cannot create the lock file {path}: {e.strerror or e}; pick a folder you can write to"
                ) from None
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                owner = _read_owner(fd)
                os.close(fd)
                if e.errno not in (errno.EACCES, errno.EAGAIN):
                    raise UserError(
                        f"cannot lock {path}: {e.strerror or e}; the file system may not support locks — "
                        "use a local folder as --results-dir"
                    ) from None
                raise UserError(cls._busy_message(folder, path, owner, flag)) from None
            try:
                same_file = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same_file = False
            if not same_file:  # the previous owner released (and deleted) it meanwhile: lock the new one
                os.close(fd)
                continue
            previous = _read_owner(fd)
            me = {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started": time.time(),
                "command": " ".join(sys.argv)[:500],
            }
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
                os.fsync(fd)
            except OSError as e:
                os.close(fd)
                raise UserError(f"cannot write {path}: {e.strerror or e}; free space or fix permissions") from None
            return cls(folder, fd, created, previous or None)
        raise UserError(f"{path} keeps being replaced by other processes; stop them and retry")

    @staticmethod
    def _busy_message(folder: Path, path: Path, owner: dict[str, Any], flag: str) -> str:
        who = _describe(owner) if owner else "another process"
        same_host = owner.get("host") == socket.gethostname()
        pid = owner.get("pid")
        if same_host and isinstance(pid, int) and not _pid_alive(pid):
            return (
                f"{folder} is locked by {who}, which no longer runs here, yet its lock in {path} is still held "
                f"(by a process of another container or pid namespace); stop that process (`fuser -v {path}` "
                f"lists it), then retry, or choose another {flag}"
            )
        return (
            f"{folder} is in use by another run ({who}; lock {path}); wait for it to finish or stop it, "
            f"or choose another {flag}"
        )

    def describe_stale(self) -> Optional[str]:
        """A log line about the dead run whose lock was taken over (None when there was none)."""
        if not self.stale_owner:
            return None
        return (
            f"took over the lock of a run that ended without releasing it ({_describe(self.stale_owner)}); "
            "its kernel lock was free, so it no longer runs"
        )

    def release(self) -> None:
        """Delete the lock file and drop the lock; removes the folder too if this lock made it and it stayed empty."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # still locked here: nobody can take the old file meanwhile
        except OSError:
            pass
        os.close(self._fd)  # closing the only descriptor drops the POSIX lock
        self._fd = None
        if self.created_folder:
            try:
                self.folder.rmdir()  # only succeeds when empty: a run that was refused before writing anything
            except OSError:
                pass

    @property
    def held(self) -> bool:
        return self._fd is not None


def lock_run_folder(folder: str | os.PathLike, info: DistInfo, flag: str = "--results-dir") -> Optional[RunLock]:
    """Rank 0 makes and locks ``folder``; every rank stops with the same line when it cannot.

    The other torchrun ranks take no lock of their own (they would contend with rank 0): they
    share rank 0's, which lives as long as the job does. Returns the lock on rank 0, else None.
    """
    return on_main_rank(lambda: RunLock.acquire(folder, flag), info, share=False)
