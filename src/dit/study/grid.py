"""A spec's grid → the list of runs, each with its exact cost bookkeeping.

Every run is one (model size, patch size, block design, recipe, seed). Sub-grids may share runs
(the designs grid and the sizes grid both hold the base model with adaLN-Zero): a run is trained
once and listed under every sub-grid it belongs to.

Cost conventions (:mod:`dit.models.flops`): ``gflops`` is the paper's number — multiply-adds of one
forward pass for one image, / 1e9. FLOPs are 2 per multiply-add:

* training FLOPs per step = 3 (forward + backward ≈ 3 forwards) × 2 × forward MACs × batch;
* sampling FLOPs per image = 2 × forward MACs × model calls per image (sampler steps × calls per
  step, × 2 when classifier-free guidance runs the conditional and the unconditional pass).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional, cast

from dit.config import RECIPES, BlockDesign, ModelConfig
from dit.models.flops import count_params, forward_macs
from dit.study.spec import StudySpec

NUM_CLASSES_DIGITS = 10


@dataclass(frozen=True)
class Run:
    """One training run of the study and what it costs."""

    id: str
    grids: tuple[str, ...]
    model: str  # the size's name
    depth: int
    hidden_size: int
    num_heads: int
    patch_size: int
    block: str
    recipe: str
    seed: int
    params: int
    gflops: float  # the paper's Gflops (forward multiply-adds per image / 1e9)
    batch_size: int
    max_steps: Optional[int]  # None: a minutes budget
    max_minutes: Optional[float]  # a minutes budget, or the spec's time limit on top of a step budget
    ckpt_every: int
    eval_steps: Optional[tuple[int, ...]]  # None: every checkpoint (the last is always evaluated)
    train_flops_per_step: int
    sampler: str
    model_calls_per_image: int
    sampling_flops_per_image: int

    @property
    def variant(self) -> str:
        """The run's id without its seed: runs of one variant differ only in their seed."""
        return self.id.rsplit("-s", 1)[0]

    @property
    def label(self) -> str:
        """Short name in plots: ``d4-w128-h4/4 adaln-zero``."""
        return f"{self.model}/{self.patch_size} {self.block}" + ("" if self.recipe == "fast" else f" {self.recipe}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["grids"] = list(self.grids)
        d["eval_steps"] = None if self.eval_steps is None else list(self.eval_steps)
        d["variant"] = self.variant
        d["label"] = self.label
        return d


def learns_sigma(recipe: str) -> bool:
    """Whether the recipe's model predicts Σ too (the paper's: twice the output channels)."""
    return bool(RECIPES[recipe].get("model", {}).get("learn_sigma", ModelConfig().learn_sigma))


def model_config(spec: StudySpec, depth: int, hidden: int, heads: int, patch: int, block: str, recipe: str):
    """The :class:`ModelConfig` `dit train` builds for this run (for counting parameters and Gflops)."""
    return ModelConfig(
        name=None,
        input_size=spec.input_size,
        in_channels=3 if spec.vae == "none" else 4,
        num_classes=NUM_CLASSES_DIGITS,
        depth=depth,
        hidden_size=hidden,
        num_heads=heads,
        patch_size=patch,
        block=cast(BlockDesign, block),  # one of BLOCK_DESIGNS: StudySpec.validate checked it
        learn_sigma=learns_sigma(recipe),
    )


def sampler_calls(sampler: str, steps: int) -> int:
    """Network calls of one unguided sample in ``steps`` steps: Heun two a step, heun-x0 two a step
    but the last (it takes x̂_0), every other registered sampler one a step (a test counts them)."""
    if sampler == "heun":
        return 2 * steps
    if sampler == "heun-x0":
        return 2 * steps - 1
    return steps


def model_calls_per_image(sampler: str, steps: int, cfg_scale: float) -> int:
    """Forward passes (per image) one sample costs: the sampler's calls, doubled under guidance."""
    return sampler_calls(sampler, steps) * (2 if cfg_scale != 1.0 else 1)


def training_steps(spec: StudySpec, train_flops_per_step: int) -> Optional[int]:
    """``max_steps`` for the spec's budget (None for a minutes budget)."""
    b = spec.budget
    if b.kind == "steps":
        return int(b.value)
    if b.kind == "images":
        return max(1, math.ceil(b.value / spec.batch_size))
    if b.kind == "flops":
        return max(1, int(b.value // train_flops_per_step))
    return None


def checkpoint_interval(spec: StudySpec, max_steps: Optional[int]) -> int:
    """Steps between checkpoints: ``ckpt_every``, the gcd of ``eval_steps``, or the budget / ``evaluations``."""
    if spec.ckpt_every:
        return spec.ckpt_every
    if spec.eval_steps:
        return math.gcd(*spec.eval_steps)
    assert max_steps is not None  # validate(): a minutes budget needs ckpt_every
    return max(1, math.ceil(max_steps / spec.evaluations))


def expand(spec: StudySpec) -> list[Run]:
    """Every run of the spec, in grid order, each once (with all the sub-grids it belongs to)."""
    spec.validate()
    order: list[str] = []
    members: dict[str, list[str]] = {}
    axes: dict[str, tuple] = {}
    for g in spec.sub_grids():
        for m in g.models:
            for p in g.patch_sizes:
                for block in g.blocks:
                    for recipe in g.recipes:
                        for seed in g.seeds:
                            rid = f"{m.name}-p{p}-{block}-{recipe}-s{seed}"
                            if rid not in members:
                                order.append(rid)
                                members[rid] = []
                                axes[rid] = (m, p, block, recipe, seed)
                            if g.name not in members[rid]:
                                members[rid].append(g.name)
    # Every variant's first seed before any variant's second: a study cut short still covers every variant.
    seed_rank = {rid: [s for g in spec.sub_grids() for s in g.seeds].index(axes[rid][4]) for rid in order}
    order.sort(key=lambda rid: seed_rank[rid])
    runs = []
    for rid in order:
        m, p, block, recipe, seed = axes[rid]
        cfg = model_config(spec, m.depth, m.hidden_size, m.num_heads, p, block, recipe)
        macs = forward_macs(cfg)
        per_step = 6 * macs * spec.batch_size
        steps = training_steps(spec, per_step)
        sampler = spec.sampler_for(recipe)
        calls = model_calls_per_image(sampler, spec.sampling_steps, spec.cfg_scale)
        runs.append(
            Run(
                id=rid,
                grids=tuple(members[rid]),
                model=m.name,
                depth=m.depth,
                hidden_size=m.hidden_size,
                num_heads=m.num_heads,
                patch_size=p,
                block=block,
                recipe=recipe,
                seed=seed,
                params=count_params(cfg),
                gflops=macs / 1e9,
                batch_size=spec.batch_size,
                max_steps=steps,
                max_minutes=spec.budget.value if spec.budget.kind == "minutes" else spec.max_minutes,
                ckpt_every=checkpoint_interval(spec, steps),
                eval_steps=None if spec.eval_steps is None else tuple(sorted(set(spec.eval_steps))),
                train_flops_per_step=per_step,
                sampler=sampler,
                model_calls_per_image=calls,
                sampling_flops_per_image=2 * macs * calls,
            )
        )
    return runs
