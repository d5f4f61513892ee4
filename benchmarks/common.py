"""Shared pieces of the benchmark suite: interleaved timing, statistics, memory, environment.

Why interleaved: on a shared machine the load changes minute by minute. Running path A five
times and then path B five times lets a burst of foreign load land on one path only; running
A, B, C, A, B, C, ... spreads it over all of them, so the *ratios* of one run stay honest even
when the absolute numbers drift. Every measurement is repeated and reported as median and
spread (min, max), never as a single best time.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

SCHEMA_VERSION = 1


@dataclass
class Stat:
    """Repeated measurements of one quantity (higher or lower is better: the caller knows)."""

    samples: List[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def min(self) -> float:
        return min(self.samples) if self.samples else float("nan")

    @property
    def max(self) -> float:
        return max(self.samples) if self.samples else float("nan")

    @property
    def spread(self) -> float:
        """(max − min) / median: the relative width of the observed range."""
        m = self.median
        return (self.max - self.min) / m if self.samples and m else float("nan")

    def to_dict(self) -> dict:
        return {
            "median": self.median,
            "min": self.min,
            "max": self.max,
            "spread": self.spread,
            "samples": list(self.samples),
        }


def synchronize(device: torch.device) -> None:
    """Wait for queued device work (a no-op on CPU) so wall-clock times cover the work itself."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device) -> tuple:
    """(wall seconds, process CPU seconds) of one call of ``fn``, device work included."""
    synchronize(device)
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    synchronize(device)
    return time.perf_counter() - start, time.process_time() - cpu


def interleaved(
    fns: Dict[str, Callable[[], object]],
    device: torch.device,
    repeats: int,
    warmup: int = 1,
    calls_per_sample: int = 1,
    cpu_out: Optional[Dict[str, Stat]] = None,
    warmup_out: Optional[Dict[str, Stat]] = None,
) -> Dict[str, Stat]:
    """Wall seconds per call of each fn, measured round-robin: warm-up rounds, then ``repeats`` rounds.

    One sample is the mean over ``calls_per_sample`` back-to-back calls (to average out timer
    granularity for fast calls). The order rotates every round so no path always runs first.
    ``cpu_out``, if given, receives the process CPU seconds per call of each fn: on a shared CPU
    (with passive OpenMP waits) this counts the work itself and barely moves with foreign load.
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    synchronize(device)
    stats = {name: Stat() for name in names}
    cpu = {name: Stat() for name in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            wall = used = 0.0
            for _ in range(calls_per_sample):
                w, c = time_call(fns[name], device)
                wall, used = wall + w, used + c
            stats[name].samples.append(wall / calls_per_sample)
            cpu[name].samples.append(used / calls_per_sample)
    if cpu_out is not None:
        cpu_out.update(cpu)
    return stats


def rate(stat: Stat, work: float) -> Stat:
    """Seconds-per-call samples → work-per-second samples (e.g. images/s), same order."""
    return Stat([work / s for s in stat.samples])


def ratio(a: Stat, b: Stat) -> Stat:
    """Per-round ratios a_i / b_i (both measured in round i, so both saw the same load)."""
    return Stat([x / y for x, y in zip(a.samples, b.samples)])


def rss_high_water_mb() -> float:
    """This process's peak resident set size so far, in MiB.

    Linux: ``VmHWM`` of /proc/self/status, the high-water mark of this program's own memory.
    (``getrusage``'s ru_maxrss is no good in a child process: it starts from the parent's RSS at
    fork.) Elsewhere: ru_maxrss.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except (OSError, ValueError, IndexError):
        pass
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024.0 if sys.platform != "darwin" else kib / 2**20


def rss_now_mb() -> float:
    """This process's current resident set size (from /proc; the high-water mark elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return rss_high_water_mb()


def environment(device: torch.device) -> dict:
    """What the numbers were measured on (recorded in every JSON)."""
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "device": str(device),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if device.type == "cpu":
        env["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        env["cpu_flags"] = _cpu_flags(("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2"))
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    try:
        import diffusers

        env["diffusers"] = diffusers.__version__
    except ImportError:
        env["diffusers"] = None
    return env


def _cpu_flags(wanted) -> Optional[List[str]]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [w for w in wanted if w in have]
    except OSError:
        pass
    return None


def write_json(obj: dict, path: Path) -> None:
    """Write ``obj`` as JSON atomically (temp file + fsync + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=_jsonable)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _jsonable(o):
    if isinstance(o, Stat):
        return o.to_dict()
    if hasattr(o, "__dataclass_fields__"):
        return asdict(o)
    if isinstance(o, (torch.dtype, torch.device, Path)):
        return str(o)
    if hasattr(o, "item") and getattr(o, "ndim", None) == 0:  # numpy / torch scalars
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def fmt_stat(stat: Stat, fmt: str = ".3g") -> str:
    """``median [min–max]`` for the printed tables."""
    return f"{format(stat.median, fmt)} [{format(stat.min, fmt)}-{format(stat.max, fmt)}]"


def table(rows: List[List[str]], header: List[str]) -> str:
    """A left-aligned fixed-width text table."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])
