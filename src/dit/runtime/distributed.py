"""Process-group set-up: the same code runs as one process or under torchrun.

Knows nothing about DiT. ``init_distributed()`` reads torchrun's environment (RANK, WORLD_SIZE,
LOCAL_RANK); without it the run is a single process and every collective below is a no-op, so
distributed code paths also run in CI on one CPU.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Callable, Literal, NoReturn, Optional, TypeVar, overload

import torch
import torch.distributed as dist

from dit.errors import UserError

T = TypeVar("T")

# The group this process joined under torchrun, kept to the end of the process. Destroyed on the main
# thread, a gloo group joins its worker threads while that thread holds the GIL, and a worker still freeing
# the last collective's tensors waits for the GIL: a deadlock (a two-rank DDP run hung so). The group is
# left to exit_rank instead.
_group: Optional[dist.ProcessGroup] = None


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: rank, world size, local rank and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _torchrun_env() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def set_tf32(device: torch.device, enabled: bool) -> None:
    """TensorFloat-32 for CUDA matmuls and convolutions on or off (no effect off CUDA).

    The ``tf32`` setting of training and sampling (official DiT: on, ``--tf32`` of sample_ddp.py):
    faster on Ampere and newer, with matmul inputs rounded to 10 mantissa bits.
    """
    if torch.device(device).type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = bool(enabled)
        torch.backends.cudnn.allow_tf32 = bool(enabled)


def resolve_device(spec: str | torch.device | None = None, what: str = "--device") -> torch.device:
    """The ``--device`` a user asked for, checked: None → CUDA when available, else CPU.

    An unknown name, or CUDA on a machine without it, is a one-line ``UserError`` rather than
    a traceback from deep inside torch (or a silent fall-back to the CPU). ``what`` names the setting
    in the message: the flag for the command line, the argument for the Python API.
    """
    if spec is None or spec == "":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except (RuntimeError, TypeError, ValueError):
        raise UserError(f"{what} {spec!r} is not a device; use cpu or cuda (cuda:N for GPU N)") from None
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"{what} {spec!r}: only cpu and cuda are supported; use one of those")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            cpu = f"{what} cpu" if what.startswith("--") else "'cpu'"
            raise UserError(f"{what} {spec!r} but no CUDA device is available here; pass {cpu}")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(
                f"{what} {spec!r} but only {torch.cuda.device_count()} CUDA device(s) exist; pick one below"
            )
    return dev


def init_distributed(device: str | None = None) -> DistInfo:
    """Join torchrun's process group (nccl on CUDA, gloo on CPU) or run as one process.

    ``device``: "cuda", "cpu" or None (CUDA when available). Each rank uses GPU ``LOCAL_RANK``.
    Calling it again once the group exists returns the same info.
    """
    use_cuda = resolve_device(device).type == "cuda"
    if not _torchrun_env() or int(os.environ["WORLD_SIZE"]) == 1:
        dev = torch.device("cuda", 0) if use_cuda else torch.device("cpu")
        if use_cuda:
            torch.cuda.set_device(dev)
        return DistInfo(device=dev)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if use_cuda:
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=rank, world_size=world)
    global _group
    _group = dist.group.WORLD
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op for one process)."""
    if info.distributed and dist.is_initialized():
        dist.barrier()


def all_reduce_max(value: float, info: DistInfo) -> float:
    """The maximum of a host scalar over ranks (used to agree on stopping)."""
    if not (info.distributed and dist.is_initialized()):
        return float(value)
    backend_cpu = dist.get_backend() == "gloo"
    t = torch.tensor([float(value)], device="cpu" if backend_cpu else info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def all_reduce_mean(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The mean of ``t`` over ranks (on the host under gloo); ``t`` itself for one process."""
    if not info.distributed:
        return t
    t = t.to("cpu") if dist.get_backend() == "gloo" else t
    dist.all_reduce(t)
    return t / info.world_size


def all_reduce_sum_int(value: int, info: DistInfo) -> int:
    """The sum of an int over ranks (a collective: every rank calls it)."""
    if not info.distributed:
        return int(value)
    t = torch.tensor([int(value)], dtype=torch.long)
    if dist.get_backend() != "gloo":
        t = t.to(info.device)
    dist.all_reduce(t)
    return int(t.item())


def broadcast_object(obj, info: DistInfo, src: int = 0):
    """Rank ``src``'s Python object on every rank (identity for one process)."""
    if not (info.distributed and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


@overload
def on_main_rank(fn: Callable[[], T], info: DistInfo, share: Literal[True] = True) -> T: ...


@overload
def on_main_rank(fn: Callable[[], T], info: DistInfo, share: Literal[False]) -> Optional[T]: ...


def on_main_rank(fn: Callable[[], T], info: DistInfo, share: bool = True) -> Optional[T]:
    """Run ``fn`` on rank 0 only and let every rank learn how it went.

    A ``UserError`` on rank 0 is raised on every rank with the same message, so no rank waits in
    a collective for a rank that has stopped. ``share``: the other ranks get ``fn``'s result
    (it must pickle); otherwise they get None.
    """
    result: Optional[T] = None
    error: Optional[str] = None
    if info.is_main:
        try:
            result = fn()
        except UserError as e:
            error = str(e)
    if info.distributed and dist.is_initialized():
        error, shared = broadcast_object((error, result if share else None), info)
        if not info.is_main:
            result = shared
    if error is not None:
        raise UserError(error)
    return result


def cleanup(info: DistInfo) -> None:
    """Leave the process group if this process joined one."""
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def joined_process_group() -> bool:
    """Whether this process has been a rank of a multi-process group (under torchrun)."""
    return _group is not None


def exit_rank(status: int) -> NoReturn:
    """End a torchrun rank with ``status``, skipping interpreter shutdown.

    The process group outlives ``destroy_process_group`` (kept above; FSDP's DTensor caches keep it too).
    Its gloo threads would run on into interpreter shutdown, where one still freeing the last collective's
    tensors needs the GIL and aborts the rank ("terminate called without an active exception": 6 of 60
    two-rank runs of a script that keeps its group). Everything written is closed by now (checkpoints and
    samples are written atomically); the standard streams are flushed.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
