"""Noise schedules and timestep respacing: pure functions on float64 numpy arrays.

Semantics follow ADM / Improved DDPM (Nichol & Dhariwal 2021) exactly, so that a model
trained with the official DiT code sees the same β_t and the same respaced timesteps here.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence, Union

import numpy as np

from dit.errors import UserError


def linear_betas(num_steps: int) -> np.ndarray:
    """DDPM's linear β from 1e-4 to 0.02, scaled by 1000/T so any T gives the same process."""
    scale = 1000.0 / num_steps
    return np.linspace(scale * 0.0001, scale * 0.02, num_steps, dtype=np.float64)  # (T,)


def betas_for_alpha_bar(num_steps: int, alpha_bar: Callable[[float], float], max_beta: float = 0.999) -> np.ndarray:
    """β_t = 1 − ᾱ((t+1)/T) / ᾱ(t/T), clipped at ``max_beta`` (Improved DDPM eq. 17 discretised)."""
    betas = []
    for i in range(num_steps):
        t1, t2 = i / num_steps, (i + 1) / num_steps
        betas.append(min(1.0 - alpha_bar(t2) / alpha_bar(t1), max_beta))
    return np.array(betas, dtype=np.float64)  # (T,)


def cosine_betas(num_steps: int, s: float = 0.008) -> np.ndarray:
    """Improved DDPM's cosine schedule: ᾱ(t) = cos²(((t + s)/(1 + s)) · π/2)."""
    return betas_for_alpha_bar(num_steps, lambda t: math.cos((t + s) / (1 + s) * math.pi / 2) ** 2)


NOISE_SCHEDULES = {"linear": linear_betas, "cosine": cosine_betas}


def get_named_beta_schedule(name: str, num_steps: int) -> np.ndarray:
    """β_1..β_T of a named schedule (``"linear"``, DiT's default, or ``"cosine"``)."""
    if name not in NOISE_SCHEDULES:
        raise UserError(f"unknown noise schedule {name!r}; choose one of {sorted(NOISE_SCHEDULES)}")
    return NOISE_SCHEDULES[name](num_steps)


def space_timesteps(num_timesteps: int, section_counts: Union[str, int, Sequence[int], None]) -> set[int]:
    """The original timesteps a respaced process keeps (ADM's ``space_timesteps``).

    ``section_counts`` is
    - ``"ddimN"``: a fixed stride ``i`` with ``len(range(0, T, i)) == N`` (DDIM paper's spacing);
    - a string ``"250"`` or ``"10,10,5"`` / a list ``[10, 10, 5]``: split ``0..T-1`` into equal
      sections and take that many evenly spaced (rounded) steps in each, both ends included;
    - ``""`` or ``None``: all ``T`` steps.
    """
    if section_counts is None or section_counts == "":
        return set(range(num_timesteps))
    if isinstance(section_counts, int):
        section_counts = [section_counts]
    if isinstance(section_counts, str):
        if section_counts.startswith("ddim"):
            desired = _parse_int(section_counts[len("ddim") :], section_counts)
            for stride in range(1, num_timesteps):
                if len(range(0, num_timesteps, stride)) == desired:
                    return set(range(0, num_timesteps, stride))
            raise UserError(
                f"cannot make {desired} DDIM steps with a fixed stride from {num_timesteps}; "
                f"use a plain step count such as '{desired}' instead"
            )
        section_counts = [_parse_int(x, section_counts) for x in section_counts.split(",")]
    counts = [int(c) for c in section_counts]
    size_per, extra = divmod(num_timesteps, len(counts))
    start, taken = 0, []
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        if count > size or count < 1:
            raise UserError(f"cannot take {count} steps from a section of {size} timesteps; use 1..{size}")
        spacing = 1.0 if count <= 1 else (size - 1) / (count - 1)
        cur = 0.0
        for _ in range(count):
            taken.append(start + round(cur))
            cur += spacing
        start += size
    return set(taken)


def _parse_int(text: str, whole: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UserError(f"bad timestep respacing {whole!r}; use e.g. '250', 'ddim50' or '10,10,5'") from None


def respaced_betas(base_betas: np.ndarray, use_timesteps: Iterable[int]) -> tuple[np.ndarray, list[int]]:
    """βs of the process that only visits ``use_timesteps``, and the map back to original t.

    β'_k = 1 − ᾱ_{t_k} / ᾱ_{t_{k−1}} keeps ᾱ at every kept step identical, so the respaced
    chain is itself a valid diffusion (ADM's ``SpacedDiffusion``).
    """
    keep = set(int(t) for t in use_timesteps)
    alphas_cumprod = np.cumprod(1.0 - base_betas)  # (T,)
    last, new_betas, timestep_map = 1.0, [], []
    for i, ac in enumerate(alphas_cumprod):
        if i in keep:
            new_betas.append(1.0 - ac / last)
            last = ac
            timestep_map.append(i)
    return np.array(new_betas, dtype=np.float64), timestep_map
