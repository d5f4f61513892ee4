"""What this machine can do fast: CPU features, a cached matmul probe, and the auto precision/compile choice.

Why: on CPUs the faster training precision depends on the machine. Without AMX (or at least
AVX-512 BF16) bf16 matmul is emulated and *slower* than fp32 (measured here: AVX2 EPYC and an
AVX-512 Sapphire Rapids VM without AMX, ``benchmarks/README.md``), so a fixed table is wrong on
one machine or another. The choice is made from ``/proc/cpuinfo`` where that settles it, and
otherwise from a short fp32-vs-bf16 matmul probe whose result is cached in
``<cache dir>/cpu_probe.json`` (keyed by CPU model, flags, torch version and thread count), so it
runs once per machine.

Bit-exactness: the paper recipe's numerics never depend on the machine. ``auto`` resolves to
fp32 without compilation for ``--recipe paper`` everywhere (the fidelity, resume and 1-vs-2-rank
tests compare bitwise); only other recipes (``--recipe fast``), which make no such promise, take
the machine's faster choice. Explicit ``--precision``/``--compile`` always win.

``DIT_AUTO_PRECISION=fp32|bf16`` replaces the machine's faster precision (no probe runs), so a test
suite or CI can take the path another machine would take: bf16 on an AMX CPU, fp32 on an AVX2 one.
It changes only what ``auto`` means for recipes that follow the machine, never the paper recipe.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional, cast

import torch

from dit.config import Precision
from dit.errors import UserError
from dit.runtime.checkpoint import atomic_write_json

# The CPU flags that decide the precision (Linux /proc/cpuinfo names).
DECIDING_FLAGS = ("amx_tile", "amx_bf16", "avx512_bf16", "avx512f", "avx2")
PROBE_FILE = "cpu_probe.json"
PROBE_SIZE = 512  # n of the n×n probe matmul: big enough for the blocked kernels, ~0.1 s per precision
BF16_MARGIN = 1.2  # bf16 must beat fp32 by this factor: autocast adds casts around every matmul
AUTO_PRECISION_ENV = "DIT_AUTO_PRECISION"
FORCEABLE: tuple[Precision, ...] = ("fp32", "bf16")


@dataclass(frozen=True)
class CpuFeatures:
    """The CPU model, torch's vector ISA (``get_cpu_capability``) and the deciding flags it has."""

    model: str
    capability: str
    flags: tuple[str, ...]

    @property
    def amx(self) -> bool:
        return "amx_tile" in self.flags and "amx_bf16" in self.flags

    @property
    def native_bf16(self) -> bool:
        """bf16 dot products in hardware (AMX or AVX-512 BF16); elsewhere oneDNN emulates them."""
        return self.amx or "avx512_bf16" in self.flags

    def describe(self) -> str:
        isa = "AMX" if self.amx else "AVX512-BF16" if "avx512_bf16" in self.flags else self.capability
        return f"{self.model or 'unknown CPU'} ({isa}, {torch.get_num_threads()} threads)"


def read_cpu_features(cpuinfo: str = "/proc/cpuinfo") -> CpuFeatures:
    """Flags from ``/proc/cpuinfo`` (Linux); elsewhere only torch's ISA level is known."""
    model, have = "", set()
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("model name") and not model:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    capability = torch.backends.cpu.get_cpu_capability()
    flags = tuple(f for f in DECIDING_FLAGS if f in have)
    if not have and capability.startswith("AVX512"):  # no cpuinfo: torch's own detection
        flags = ("avx512f", "avx2")
    return CpuFeatures(model=model, capability=capability, flags=flags)


@dataclass(frozen=True)
class MatmulProbe:
    """GFLOP/s of an n×n matmul in fp32 and bf16 on this process's threads."""

    fp32_gflops: float
    bf16_gflops: float
    size: int
    threads: int

    @property
    def bf16_speedup(self) -> float:
        return self.bf16_gflops / self.fp32_gflops


def probe_matmul(size: int = PROBE_SIZE, repeats: int = 5) -> MatmulProbe:
    """Best-of-``repeats`` matmul throughput per precision (best: the probe asks what the hardware can do)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen)  # (n, n)
    b = torch.randn(size, size, generator=gen)  # (n, n)
    rates = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        x, y = a.to(dtype), b.to(dtype)
        torch.matmul(x, y)  # warm-up: kernel selection, page faults
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            torch.matmul(x, y)
            best = min(best, time.perf_counter() - start)
        rates[name] = 2.0 * size**3 / best / 1e9
    return MatmulProbe(rates["fp32"], rates["bf16"], size, torch.get_num_threads())


def cache_dir() -> Path:
    """``$DIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/dit``, else ``~/.cache/dit``."""
    if os.environ.get("DIT_CACHE_DIR"):
        return Path(os.environ["DIT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dit"


def _probe_key(features: CpuFeatures) -> str:
    text = json.dumps([features.model, features.capability, features.flags, torch.__version__, torch.get_num_threads()])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_probe(
    features: CpuFeatures, folder: Optional[Path] = None, run: Callable[[], MatmulProbe] = probe_matmul
) -> tuple[MatmulProbe, bool]:
    """(the probe for this machine, whether it came from the cache). A cache that cannot be read
    or written is ignored: the probe then runs each time (about a second), never an error."""
    path = (folder or cache_dir()) / PROBE_FILE
    key = _probe_key(features)
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if not isinstance(cached, dict):
        cached = {}
    entry = cached.get(key)
    if isinstance(entry, dict):
        try:
            return MatmulProbe(**entry), True
        except TypeError:
            pass
    probe = run()
    cached[key] = asdict(probe)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, cached)
    except (OSError, UserError):
        pass
    return probe, False


@dataclass(frozen=True)
class SpeedChoice:
    """The precision and compilation a run uses, and the one-line reason logged with them."""

    precision: Precision
    compile: bool
    reason: str

    def describe(self) -> str:
        return f"precision {self.precision}, compile {'on' if self.compile else 'off'} ({self.reason})"


def cpu_fast_precision(features: CpuFeatures, probe: Callable[[CpuFeatures], MatmulProbe]) -> tuple[Precision, str]:
    """(faster precision on this CPU, why). Without hardware bf16 the answer is fp32 and no probe runs."""
    if not features.native_bf16:
        return "fp32", f"{features.describe()}: no AMX/AVX512-BF16, bf16 matmul is emulated"
    p = probe(features)
    faster: Precision = "bf16" if p.bf16_speedup >= BF16_MARGIN else "fp32"
    return faster, (
        f"{features.describe()}: matmul probe {p.fp32_gflops:.0f} GFLOP/s fp32, {p.bf16_gflops:.0f} bf16 "
        f"(bf16 {'≥' if faster == 'bf16' else '<'} {BF16_MARGIN}× fp32)"
    )


def forced_fast_precision() -> Optional[Precision]:
    """``$DIT_AUTO_PRECISION`` when set: the precision ``auto`` takes as this machine's faster one."""
    value = os.environ.get(AUTO_PRECISION_ENV, "").strip().lower()
    if not value:
        return None
    if value not in FORCEABLE:
        raise UserError(
            f"{AUTO_PRECISION_ENV}={value[:20]!r} is not a precision; set it to {' or '.join(FORCEABLE)}, or unset it"
        )
    return cast(Precision, value)


def resolve_speed(
    device: torch.device,
    precision: str,
    compile: Optional[bool],
    recipe: str,
    features: Optional[CpuFeatures] = None,
    probe: Optional[Callable[[CpuFeatures], MatmulProbe]] = None,
) -> SpeedChoice:
    """Turn ``precision="auto"`` / ``compile=None`` into concrete settings for ``device``.

    - given values are kept as they are;
    - ``recipe == "paper"``: fp32, eager (bit-exact everywhere; the reason names the machine's faster
      precision when it differs, so a user who wants speed over exactness knows the flag);
    - other recipes on CPU: the precision :func:`cpu_fast_precision` picks, eager (``torch.compile``
      measured no faster for DiT-S/2 on CPU and costs minutes of compilation, benchmarks/README.md);
    - other recipes on CUDA: bf16 where supported, compiled;
    - ``$DIT_AUTO_PRECISION`` set: it is the faster precision, whatever the device (nothing is probed).
    """
    auto_precision, auto_compile = precision == "auto", compile is None
    given = cast(Precision, precision)  # not "auto" whenever it is used below
    if not auto_precision and not auto_compile:
        return SpeedChoice(given, bool(compile), "as given")
    fast_precision: Precision
    forced = forced_fast_precision()
    if forced is not None:
        fast_precision, fast_compile, why = forced, device.type == "cuda", f"forced by {AUTO_PRECISION_ENV}={forced}"
    elif device.type == "cuda":
        fast_precision = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        fast_compile, why = True, f"{torch.cuda.get_device_name(device)}"
    elif device.type == "cpu":
        features = features or read_cpu_features()
        fast_precision, why = cpu_fast_precision(features, probe or (lambda f: cached_probe(f)[0]))
        fast_compile = False
    else:
        fast_precision, fast_compile, why = "fp32", False, f"device {device.type}"
    chosen_precision: Precision
    if recipe == "paper":
        chosen_precision, chosen_compile = "fp32", False
        note = "auto, paper recipe: fp32 eager for bit-exact results on every machine"
        if fast_precision != "fp32" and auto_precision:
            note += f"; --precision {fast_precision} would be faster here"
    else:
        chosen_precision, chosen_compile = fast_precision, fast_compile
        note = f"auto, recipe {recipe}: the faster path here"
    return SpeedChoice(
        given if not auto_precision else chosen_precision,
        bool(compile) if not auto_compile else chosen_compile,
        f"{note}; {why}",
    )
