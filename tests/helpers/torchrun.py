"""Run a `dit` sub-command under torchrun with CPU (gloo) ranks, as the multi-process tests do."""

import os
import subprocess
import sys


def run_torchrun(
    argv, nproc: int = 2, timeout: int = 300, check: bool = True, script: str | None = None
) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node N -m dit.cli.main ARGV``, one OpenMP thread per rank
    (two ranks share the two cores). With ``check``, a non-zero exit fails with the ranks' stderr.
    ``script``: a Python file that runs instead of ``-m dit.cli.main`` (it gets ARGV)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    entry = [script] if script else ["-m", "dit.cli.main"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *entry, *argv]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc
