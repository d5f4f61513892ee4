"""One torchrun rank of ``dit ARGV`` that reports the process-group threads it still has, then leaves as ``dit`` does.

After the command it prints ``group threads after the command: [...]`` (gloo's threads still alive),
then leaves as ``dit`` does. Should it reach interpreter shutdown with such threads alive, where one of
them can abort the rank now and then ("terminate called without an active exception"), it exits 3
instead: the flake, caught every run. Run as a script by torchrun (``run_torchrun(..., script=...)``).
"""

import atexit
import os
import sys

from dit.cli.main import leave, main

PREFIX = "group threads after the command:"


def group_threads() -> list[str]:
    """Names of this process's threads that belong to a gloo process group (Linux /proc)."""
    names = []
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/comm") as f:
            names.append(f.read().strip())
    return sorted(n for n in names if "gloo" in n)


def _fail_if_group_threads() -> None:  # atexit: runs only when interpreter shutdown begins
    if left := group_threads():
        sys.stderr.write(f"rank {os.environ.get('RANK')} reached interpreter shutdown with {left} alive\n")
        sys.stderr.flush()
        os._exit(3)


if __name__ == "__main__":
    atexit.register(_fail_if_group_threads)
    status = main(sys.argv[1:])
    sys.stderr.write(f"{PREFIX} {group_threads()}\n")
    leave(status)
