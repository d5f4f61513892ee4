"""A checkpoint's sampling defaults: the sampler, steps and guidance a request draws with where it leaves them unset.

Training records them in every checkpoint and EMA export (``config["sampling"]``), resolved from the
run's ``[sampling]`` settings (``--sampler``, ``--num-sampling-steps``) and the objective: the
registry's choice for what the network predicts (:func:`dit.diffusion.registry.default_for`), and
guidance 1 for a MeanFlow model whose guidance is folded into its weights (more would guide twice).
`dit sample`, the Pipeline, `dit serve`, `dit demo` and the training hooks read them through
:meth:`SamplingDefaults.fill`, so a checkpoint is drawn the way its run chose. Files that record none
(official weights, older checkpoints) get the registry's choice for their objective.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from dit.config import DiffusionConfig, GenerationRequest
from dit.diffusion.registry import OBJECTIVE_NAMES, default_for, names_for
from dit.errors import UserError

FALLBACK_CFG_SCALE = 1.5
"""Guidance where neither the request nor the checkpoint sets it (`dit sample`; the paper's FID scale)."""


def prediction_of(diffusion: DiffusionConfig) -> Optional[str]:
    """What a flow or MeanFlow network predicts (``xstart`` or ``v``); None for Gaussian diffusion."""
    if diffusion.objective == "gaussian":
        return None
    return diffusion.prediction_type or "v"


@dataclass(frozen=True)
class SamplingDefaults:
    """``sampler`` and ``num_sampling_steps`` always set; ``cfg_scale`` None leaves guidance to the surface."""

    sampler: str
    num_sampling_steps: int
    cfg_scale: Optional[float] = None

    @classmethod
    def of(
        cls, diffusion: DiffusionConfig, sampler: Optional[str] = None, steps: Optional[int] = None
    ) -> "SamplingDefaults":
        """The defaults of a model trained with ``diffusion``; ``sampler``/``steps`` chosen by the run (None: the
        registry's for the objective). A sampler of another objective is one UserError."""
        objective = diffusion.objective
        registry_sampler, registry_steps = default_for(objective, prediction_of(diffusion))
        if sampler is not None and sampler not in names_for(objective):
            raise UserError(
                f"sampler {sampler!r} does not draw from {OBJECTIVE_NAMES[objective]}; "
                f"choose one of {', '.join(names_for(objective))} or leave it unset"
            )
        folded = objective == "meanflow" and float(diffusion.meanflow_guidance) != 1.0
        return cls(
            sampler or registry_sampler,
            int(steps or registry_steps),
            1.0 if folded else None,
        )

    @classmethod
    def from_record(cls, record: Any, diffusion: DiffusionConfig) -> "SamplingDefaults":
        """A checkpoint's recorded defaults; entries that do not fit its objective fall back to :meth:`of`."""
        derived = cls.of(diffusion)
        if not isinstance(record, Mapping):
            return derived
        sampler, steps, cfg = record.get("sampler"), record.get("num_sampling_steps"), record.get("cfg_scale")
        if not (isinstance(sampler, str) and sampler in names_for(diffusion.objective)):
            sampler = derived.sampler
        if not (isinstance(steps, int) and not isinstance(steps, bool) and steps > 0):
            steps = derived.num_sampling_steps
        if not (isinstance(cfg, (int, float)) and not isinstance(cfg, bool) and math.isfinite(cfg) and cfg >= 0):
            cfg = derived.cfg_scale
        return cls(sampler, int(steps), None if cfg is None else float(cfg))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fill(self, request: GenerationRequest, cfg_scale: float = FALLBACK_CFG_SCALE) -> GenerationRequest:
        """``request`` with its unset sampler, steps and guidance taken from here (guidance: else ``cfg_scale``)."""
        sampler = self.sampler if request.sampler is None else request.sampler
        steps = self.num_sampling_steps if request.num_sampling_steps is None else request.num_sampling_steps
        if request.cfg_scale is not None:
            guidance = request.cfg_scale
        else:
            guidance = self.cfg_scale if self.cfg_scale is not None else cfg_scale
        return dataclasses.replace(request, sampler=sampler, num_sampling_steps=steps, cfg_scale=guidance)
