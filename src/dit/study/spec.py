"""The study's specification: one dataclass that owns every default, choice and validation.

A spec names the axes of the grid (model sizes, patch sizes, block designs, recipes, seeds), the
training budget every run gets, and the fixed evaluation (sampler, steps, guidance, number of
samples, features). It is read from TOML (``tomllib``) or JSON; the command line's flags override
its fields. ``[[grid]]`` tables make a study the union of several sub-grids (e.g. the four block
designs at one size, and four sizes with one design), each a Cartesian product of its axes; an
axis a sub-grid does not set comes from the top level.

Models are given as a registry size (``"S"``, ``"DiT-B"``; the paper's Table 1), a custom size
``"d4-w128-h4"`` (depth, width, heads) or a table ``{depth = 4, hidden_size = 128, num_heads = 4}``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from dit.config import BLOCK_DESIGNS, PRECISIONS, RECIPES, SAMPLER_NAMES, ModelConfig
from dit.config.fields import setting
from dit.config.files import tomllib  # the stdlib's, or tomli on Python 3.10
from dit.errors import UserError
from dit.models.flops import VAE_DOWNSAMPLE
from dit.models.registry import SIZES

BUDGET_KINDS = ("steps", "images", "flops", "minutes")
GRID_AXES = ("models", "patch_sizes", "blocks", "recipes", "seeds")
DIGITS = "digits"  # the bundled digits: the study exports them and trains its own evaluation classifier
# The recipe's own fast sampler (as `dit demo`): Heun ending on x̂_0 for the x-prediction flow model
# (heun-x0: plain Heun's last corrector at t = 0 left grain, docs/sampling.md), DPM-Solver++(2M) for the ε-model.
RECIPE_SAMPLER = {"fast": "heun-x0", "paper": "dpm++2m"}
_CUSTOM = re.compile(r"^d(\d+)-w(\d+)-h(\d+)$")


@dataclass(frozen=True)
class ModelSize:
    """Depth, width and heads of a transformer (the patch size is a separate axis)."""

    depth: int
    hidden_size: int
    num_heads: int
    name: str  # "S" for a registry size, "d4-w128-h4" for a custom one

    @classmethod
    def parse(cls, value: Any) -> "ModelSize":
        """A registry size name, ``"dD-wW-hH"``, or a table with depth, hidden_size, num_heads."""
        if isinstance(value, ModelSize):
            return value
        if isinstance(value, dict):
            try:
                d, w, h = (int(value[k]) for k in ("depth", "hidden_size", "num_heads"))
            except (KeyError, TypeError, ValueError):
                raise UserError(f"model {value!r} needs integer depth, hidden_size and num_heads") from None
            return cls(d, w, h, str(value.get("name") or f"d{d}-w{w}-h{h}"))
        text = str(value).strip()
        size = text[len("DiT-") :] if text.startswith("DiT-") else text
        if size in SIZES:
            d, w, h = SIZES[size]
            return cls(d, w, h, size)
        m = _CUSTOM.match(text)
        if m:
            d, w, h = (int(g) for g in m.groups())
            return cls(d, w, h, text)
        raise UserError(
            f"model {text!r} is neither a registry size ({', '.join(SIZES)}) nor a custom size like d4-w128-h4"
        )

    def to_value(self) -> Any:
        return self.name if self.name in SIZES else dataclasses.asdict(self)


@dataclass(frozen=True)
class Budget:
    """How long every run trains: a number of steps, images, training FLOPs or wall minutes."""

    kind: str
    value: float

    def describe(self) -> str:
        return f"{self.value:g} {self.kind}"


@dataclass(frozen=True)
class SubGrid:
    """One Cartesian product of the axes; ``name`` labels its plots (e.g. "designs", "sizes")."""

    name: str
    models: tuple[ModelSize, ...]
    patch_sizes: tuple[int, ...]
    blocks: tuple[str, ...]
    recipes: tuple[str, ...]
    seeds: tuple[int, ...]


# --help sections of `dit study`
GRID = "grid (comma-separated lists; override the spec's top-level axes)"
BUDGET = "budget (one of) and evaluation"


@dataclass
class StudySpec:
    """Everything a study needs; ``validate()`` refuses a bad spec in one line before anything runs."""

    name: str = setting("study", help="the study's name (report titles)", cli=False)
    # Data: "digits" (the bundled digits at image_size, a held-out split for the classifier and the
    # FID reference) or an image folder (one sub-folder per class) with `reference` and `features`.
    data: str = setting(DIGITS, help="'digits' or an image folder (one sub-folder per class)", cli=False)
    reference: Optional[str] = setting(None, help="FID reference images of an image folder", cli=False)
    features: Optional[str] = setting(  # digits: the study's own classifier
        None, help="'inception' or 'classifier:PATH' (an image folder's feature network)", cli=False
    )
    image_size: int = setting(16, help="image side", group=BUDGET, bound=">0")
    vae: str = setting("none", help="latent codec of every run (none: pixel space)", cli=False)
    held_out_fraction: float = setting(0.3, help="digits: share held out for the classifier", cli=False)
    classifier_epochs: int = setting(30, help="digits: evaluation classifier epochs", cli=False)
    classifier_width: int = setting(32, help="digits: evaluation classifier channels", cli=False)
    # Seed of the held-out split, the evaluation classifier, the real subset and every run's sampling
    # noise: one for the whole study, so every run is judged alike (runs' own seeds are the `seeds` axis)
    eval_seed: int = setting(0, help="seed of the split, classifier, real subset and sampling noise", cli=False)
    # Axes (the top-level grid; [[grid]] tables override them per sub-grid)
    models: list[Any] = setting(
        default_factory=lambda: ["d4-w128-h4"], help="sizes: registry (S, B, ...) or custom dD-wW-hH", group=GRID
    )
    patch_sizes: list[int] = setting(default_factory=lambda: [4], help="patch sizes", group=GRID)
    blocks: list[str] = setting(
        default_factory=lambda: ["adaln-zero"], help=f"block designs: {', '.join(BLOCK_DESIGNS)}", group=GRID
    )
    recipes: list[str] = setting(default_factory=lambda: ["fast"], help=f"recipes: {', '.join(RECIPES)}", group=GRID)
    seeds: list[int] = setting(default_factory=lambda: [0], help="seeds", group=GRID)
    grids: list = setting(default_factory=list, help="[[grid]] tables: sub-grids", cli=False)
    # Budget: exactly one of steps, images, flops (training FLOPs, 2 per multiply-add) or minutes
    steps: Optional[int] = setting(None, help="training steps per run", group=BUDGET, bound=">0")
    images: Optional[int] = setting(None, help="training images per run", group=BUDGET, bound=">0")
    flops: Optional[float] = setting(None, help="training FLOPs per run", group=BUDGET, bound=">0")
    minutes: Optional[float] = setting(None, help="training wall minutes per run", group=BUDGET, bound=">0")
    evaluations: int = setting(  # evenly spaced over the budget, the last at its end
        4, help="checkpoints evaluated per run", group=BUDGET, bound=">0"
    )
    eval_steps: Optional[list] = setting(
        None, help="or exactly these steps (e.g. log-spaced: 100, 200, 400, ...), and the last", cli=False
    )
    ckpt_every: Optional[int] = setting(
        None, help="steps between checkpoints: overrides both (needed for a minutes budget)", cli=False
    )
    # Training (dit train; the recipe brings the rest)
    batch_size: int = setting(32, help="global batch size", group=BUDGET, bound=">0")
    lr: Optional[float] = setting(1e-3, help="AdamW learning rate of every run", cli=False)
    warmup_steps: Optional[int] = setting(50, help="linear lr warm-up steps of every run", cli=False)
    max_minutes: Optional[float] = setting(
        None, help="stop each run's training (with a checkpoint) after this many minutes", cli=False
    )
    log_every: Optional[int] = setting(
        None, help="steps between loss-log lines (None: every checkpoint, at most 50)", cli=False
    )
    precision: Optional[str] = setting(
        None, help="autocast precision of training and sampling (None: `dit train`'s own)", cli=False
    )
    train_args: list = setting(
        default_factory=list, help="any further `dit train` flags, passed as they are", cli=False
    )
    # Evaluation: one fixed sampler and guidance for every checkpoint
    sampler: Optional[str] = setting(
        None, help="sampler (default: the recipe's own)", choices=SAMPLER_NAMES, group=BUDGET
    )
    sampling_steps: int = setting(10, help="sampler steps", flag="--num-sampling-steps", group=BUDGET, bound=">0")
    cfg_scale: float = setting(2.0, help="guidance scale", group=BUDGET)
    num_samples: int = setting(500, help="samples per evaluation", group=BUDGET, bound=">0")
    device: Optional[str] = setting(None, help="cuda or cpu (default: cuda when available)", group=BUDGET)

    # ---- reading -------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StudySpec":
        d = dict(d)
        grid = d.pop("grid", None)  # TOML's [[grid]] tables
        if grid is not None:
            d["grids"] = grid
        if isinstance(d.get("budget"), dict):  # budget = {steps = 3000}
            d.update(d.pop("budget"))
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise UserError(f"study spec: unknown keys {unknown}; expected some of {sorted(names)}")
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path) -> "StudySpec":
        """A spec from a ``.toml`` or ``.json`` file."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as e:
            raise UserError(f"cannot read the study spec {p}: {e.strerror or e}") from None
        try:
            data = json.loads(text) if p.suffix == ".json" else tomllib.loads(text)
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
            raise UserError(f"{p} is not valid {'JSON' if p.suffix == '.json' else 'TOML'}: {e}") from None
        if not isinstance(data, dict):
            raise UserError(f"{p} must hold a table of settings")
        return cls.from_dict(data)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["models"] = [ModelSize.parse(m).to_value() for m in self.models]
        d["grids"] = [
            {k: ([ModelSize.parse(m).to_value() for m in v] if k == "models" else v) for k, v in g.items()}
            for g in self.grids
        ]
        return d

    # ---- derived settings ----------------------------------------------------------------------

    @property
    def budget(self) -> Budget:
        given = [(k, getattr(self, k)) for k in BUDGET_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            got = ", ".join(k for k, _ in given) or "none"
            raise UserError(f"give exactly one budget (steps, images, flops or minutes); got {got}")
        return Budget(*given[0])

    @property
    def input_size(self) -> int:
        """The side the transformer sees: the image in pixel space, the latent (image / 8) with a VAE."""
        return self.image_size if self.vae == "none" else self.image_size // VAE_DOWNSAMPLE

    def sampler_for(self, recipe: str) -> str:
        return self.sampler or RECIPE_SAMPLER[recipe]

    def sub_grids(self) -> list[SubGrid]:
        """The sub-grids (one named "main" from the top-level axes when there are no [[grid]] tables)."""
        tables = self.grids or [{"name": "main"}]
        out = []
        for i, t in enumerate(tables):
            if not isinstance(t, dict):
                raise UserError(f"grid {i + 1} must be a table of axes ({', '.join(GRID_AXES)})")
            unknown = sorted(set(t) - set(GRID_AXES) - {"name"})
            if unknown:
                raise UserError(f"grid {t.get('name', i + 1)!r}: unknown keys {unknown}; axes are {list(GRID_AXES)}")
            axes = {a: t.get(a, getattr(self, a)) for a in GRID_AXES}
            for a, v in axes.items():
                if not isinstance(v, (list, tuple)) or not v:
                    raise UserError(f"grid {t.get('name', i + 1)!r}: {a} must be a non-empty list")
            out.append(
                SubGrid(
                    name=str(t.get("name", f"grid{i + 1}")),
                    models=tuple(ModelSize.parse(m) for m in axes["models"]),
                    patch_sizes=tuple(_int(p, "patch size") for p in axes["patch_sizes"]),
                    blocks=tuple(str(b) for b in axes["blocks"]),
                    recipes=tuple(str(r) for r in axes["recipes"]),
                    seeds=tuple(_int(s, "seed") for s in axes["seeds"]),
                )
            )
        names = [g.name for g in out]
        if len(set(names)) != len(names):
            raise UserError(f"grid names must differ; got {names}")
        return out

    # ---- validation ----------------------------------------------------------------------------

    def validate(self) -> "StudySpec":
        """Every setting a run would only reject minutes later is refused now, in one line."""
        budget = self.budget
        if not (isinstance(budget.value, (int, float)) and math.isfinite(budget.value) and budget.value > 0):
            raise UserError(f"the budget {budget.kind} must be a positive number, got {budget.value!r}")
        if budget.kind == "minutes" and not self.ckpt_every:
            raise UserError("a minutes budget needs ckpt_every (steps between evaluated checkpoints)")
        for name in ("evaluations", "image_size", "batch_size", "sampling_steps", "num_samples", "classifier_epochs"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) > 0):
                raise UserError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("ckpt_every", "log_every"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and value > 0):
                raise UserError(f"{name} must be a positive integer, got {value!r}")
        if self.max_minutes is not None and not (isinstance(self.max_minutes, (int, float)) and self.max_minutes > 0):
            raise UserError(f"max_minutes must be a positive number, got {self.max_minutes!r}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise UserError(f"precision {self.precision!r} is unknown; choose one of {', '.join(PRECISIONS)}")
        if self.eval_steps is not None and not (
            isinstance(self.eval_steps, list)
            and self.eval_steps
            and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in self.eval_steps)
        ):
            raise UserError(f"eval_steps must be a non-empty list of positive step numbers, got {self.eval_steps!r}")
        if self.num_samples <= 3:
            raise UserError("num_samples must be more than 3 (precision/recall use 3 nearest neighbours)")
        if self.sampler is not None and self.sampler not in SAMPLER_NAMES:
            raise UserError(f"sampler {self.sampler!r} is unknown; choose one of {', '.join(SAMPLER_NAMES)}")
        if self.data != DIGITS and not (self.reference and self.features):
            raise UserError(f"data {self.data!r} is an image folder: also give reference (images) and features")
        if not isinstance(self.train_args, list) or not all(isinstance(a, str) for a in self.train_args):
            raise UserError("train_args must be a list of strings (extra `dit train` flags)")
        for g in self.sub_grids():
            for b in g.blocks:
                if b not in BLOCK_DESIGNS:
                    raise UserError(f"grid {g.name!r}: block {b!r} is unknown; choose from {', '.join(BLOCK_DESIGNS)}")
            for r in g.recipes:
                if r not in RECIPES:
                    raise UserError(f"grid {g.name!r}: recipe {r!r} is unknown; choose from {', '.join(RECIPES)}")
            for m in g.models:
                try:
                    ModelConfig(name=None, depth=m.depth, hidden_size=m.hidden_size, num_heads=m.num_heads).validate()
                except UserError as e:
                    raise UserError(f"model {m.name}: {e}") from None
            for p in g.patch_sizes:
                if p <= 0 or self.input_size % p:
                    raise UserError(
                        f"grid {g.name!r}: patch size {p} does not divide the model's input side {self.input_size}"
                    )
        return self


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{what} {value!r} must be an integer")
    return value
