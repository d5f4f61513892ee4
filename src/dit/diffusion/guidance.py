"""Classifier-free guidance (Ho & Salimans 2022) as a model wrapper.

``guided_model_fn(model, cfg_scale, null_label)`` returns ``fn(x, t, y)`` that runs the
conditional rows and the null-label rows in one forward pass and combines
ε̂ = ε_u + s (ε_c − ε_u). The variance channels (if any) are the conditional rows'.

``channels``:
- ``"all"`` (default): every ε channel is guided — the standard form.
- ``"official"``: only the first 3 channels, as the official DiT ``forward_with_cfg`` does
  ("for exact reproducibility"); needed to match the published FID 2.27 at s = 1.5. The other
  ε channels keep the conditional prediction. Record the mode wherever samples are written.

``interval=(lo, hi)``: guide only rows whose original timestep t satisfies lo ≤ t ≤ hi; the
other rows run conditional-only (no null rows in the batch, so those steps cost half).
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch

from dit.config import GUIDANCE_CHANNELS, GuidanceChannels, guided_channel_count

__all__ = ["GUIDANCE_CHANNELS", "GuidedModel", "guided_model_fn"]


class GuidedModel:
    """A model function ``fn(x, t, y=None)`` with its ``guidance`` settings (cfg_scale, channels,
    interval, guided) attached, for recording the protocol wherever samples are written."""

    def __init__(self, fn: Callable[..., torch.Tensor], guidance: dict):
        self.fn = fn
        self.guidance = guidance

    def __call__(
        self, x: torch.Tensor, t: torch.Tensor, y: Optional[torch.Tensor] = None, **kw: torch.Tensor
    ) -> torch.Tensor:
        return self.fn(x, t, y, **kw)


def guided_model_fn(
    model: Callable,
    cfg_scale: float,
    null_label: Optional[int],
    channels: GuidanceChannels = "all",
    interval: Optional[Tuple[int, int]] = None,
) -> GuidedModel:
    """``fn(x, t, y=None)`` → (N, C or 2C, ...): ``model(x, t, y)`` with guidance scale s.

    ``model(x, t, y)`` returns (N, C, ...) or (N, 2C, ...) with C = x.shape[1]. With
    ``null_label=None`` (an unconditional model) or s = 1 the model runs once, unguided.
    The returned GuidedModel has a ``guidance`` dict (scale, channels, interval, guided) for
    recording the protocol wherever samples are written.
    """
    guided_channel_count(channels, 1)  # an unknown name fails here, before any sampling
    assert cfg_scale >= 0, f"cfg_scale {cfg_scale}: GenerationRequest.validate() refuses it"
    assert interval is None or interval[0] <= interval[1], f"empty guidance interval {interval}: validate() refuses it"
    settings = {
        "cfg_scale": float(cfg_scale),
        "channels": channels,
        "interval": None if interval is None else [int(interval[0]), int(interval[1])],
    }
    if null_label is None or cfg_scale == 1.0:
        # s = 1 is exactly the conditional model: ε_u + 1·(ε_c − ε_u) = ε_c, at half the cost.
        def unguided(x, t, y=None, **kw):
            return model(x, t, y, **kw)

        return GuidedModel(unguided, dict(settings, guided=False))

    def fn(x: torch.Tensor, t: torch.Tensor, y: Optional[torch.Tensor] = None, **kw: torch.Tensor) -> torch.Tensor:
        # kw: per-row model inputs besides t (MeanFlow's ``interval`` (N,)), duplicated with the guided rows
        N, C = x.shape[0], x.shape[1]
        if y is None:
            y = torch.full((N,), null_label, dtype=torch.long, device=x.device)
        guide = torch.ones(N, dtype=torch.bool, device=x.device)  # (N,) rows to guide
        if interval is not None:
            guide = (t >= interval[0]) & (t <= interval[1])
        idx = guide.nonzero(as_tuple=True)[0]  # (M,)
        if idx.numel() == 0:
            return model(x, t, y, **kw)
        null = torch.full((idx.numel(),), null_label, dtype=y.dtype, device=y.device)
        both = {k: torch.cat([a, a[idx]]) for k, a in kw.items()}
        out = model(torch.cat([x, x[idx]]), torch.cat([t, t[idx]]), torch.cat([y, null]), **both)  # (N+M, C|2C, ...)
        cond, uncond = out[:N], out[N:]  # (N, ...), (M, ...)
        k = guided_channel_count(channels, C)  # guided ε channels
        eps_c = cond[idx, :k]  # (M, k, ...)
        guided = uncond[:, :k] + cfg_scale * (eps_c - uncond[:, :k])
        result = cond.clone()
        result[idx, :k] = guided
        return result

    return GuidedModel(fn, dict(settings, guided=True))  # guidance: what writers record next to the samples
