"""The training loop: DiT's recipe, world-size-independent randomness, exact resume, clean stops.

Recipe (paper §4 / official train.py): AdamW(lr 1e-4, wd 0, betas (0.9, 0.999)), constant lr
(optional linear warm-up and cosine decay), EMA 0.9999 of the weights, optional grad-norm
clipping, uniform t ∈ {0..T−1}, labels dropped to the null class with p = 0.1.

The jobs around the loop live beside it: data source, model, objective and optimiser in
:mod:`dit.train.components`; data order, per-example randomness and the lr schedule
in :mod:`dit.train.schedule` (pure functions); the run folder and resume choice in
:mod:`dit.train.run_folder`; checkpoint save/load in :mod:`dit.train.checkpointing`; stopping in
:mod:`dit.train.stopping`; logging in :mod:`dit.train.progress`; the hooks protocol in
:mod:`dit.train.callbacks`.

Stops (max steps / epochs / minutes, SIGINT, SIGTERM) all end with a checkpoint; ranks agree on
stopping through one tiny all-reduce per step. Non-finite gradients skip the optimiser step;
``max_bad_steps`` of them in a row stop the run naming the last good checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from torch import nn

from dit.config import DiffusionConfig, ModelConfig, TrainConfig
from dit.config.files import to_toml
from dit.diffusion import training_timesteps
from dit.errors import UserError
from dit.models import build_model
from dit.runtime.checkpoint import checkpoint_path, remove_stray_temps
from dit.runtime.distributed import (
    DistInfo,
    all_reduce_max,
    barrier,
    cleanup,
    init_distributed,
    on_main_rank,
    set_tf32,
)
from dit.runtime.logging import RunLogger
from dit.runtime.run_lock import lock_run_folder
from dit.sampling.defaults import SamplingDefaults
from dit.train import checkpointing, init_from
from dit.train.callbacks import TrainCallback, due
from dit.train.components import build_components, optimizer, resolve_run_speed
from dit.train.ema import EMA, EMASchedule
from dit.train.parallelize import parallelize
from dit.train.progress import BadImageReport, LossWindow, progress_bar
from dit.train.run_folder import BAD_IMAGE_LOG, ckpt_dir, resolve_resume, write_run_info, write_settings
from dit.train.schedule import (
    draw_step_randomness,
    epoch_permutation,
    learning_rate,
    local_batches,
)
from dit.train.stopping import StopSignals, stop_reason

_PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class TrainResult:
    """How a run ended: the step and epoch reached, why, the last checkpoint, skipped steps."""

    step: int
    epoch: int
    stop_reason: str
    last_checkpoint: Optional[Path]
    skipped_steps: int
    is_main: bool = True


class Trainer:
    """Owns one run: builds everything, trains, checkpoints. Use :func:`train` for the one-call form."""

    def __init__(
        self,
        cfg: TrainConfig,
        model_cfg: ModelConfig,
        diffusion_cfg: DiffusionConfig,
        info: DistInfo,
        callbacks: Optional[Sequence[TrainCallback]] = None,
        settings: Optional[str] = None,
        sampling: Optional[SamplingDefaults] = None,
    ):
        self._check_config(cfg, info, callbacks)
        # What the checkpoints record as the model's sampler, steps and guidance (dit.sampling.defaults)
        self.sampling_defaults = sampling or SamplingDefaults.of(diffusion_cfg)
        self.settings = settings  # the run folder's config.toml (None: not written)
        self.timesteps_from_coins = training_timesteps(diffusion_cfg)  # validates diffusion_cfg
        self.speed = resolve_run_speed(cfg, info)
        cfg = dataclasses.replace(cfg, precision=self.speed.precision, compile=self.speed.compile)
        self.cfg, self.info, self.diffusion_cfg = cfg, info, diffusion_cfg
        self.device = info.device
        self.run_dir = Path(cfg.results_dir)
        # Rank 0 reads (and hashes) the checkpoints once; every rank resumes from its choice or stops with its error.
        self.resume_from, skipped = on_main_rank(lambda: resolve_resume(cfg), info)
        set_tf32(info.device, cfg.tf32)  # the same switch as `dit sample --no-tf32`
        model, pretrained, init_ema, init_report = self._build(cfg, model_cfg, diffusion_cfg)
        if len(self.source.dataset) < cfg.global_batch_size:
            raise UserError(
                f"the data has {len(self.source.dataset)} examples, fewer than --global-batch-size "
                f"{cfg.global_batch_size}; lower the batch size"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if hasattr(self.source.dataset, "bad_image_log"):  # every process/worker appends its skips here
            self.source.dataset.bad_image_log = self.run_dir / BAD_IMAGE_LOG
        self.model = model.to(self.device)
        self.train_model = parallelize(
            self.model, info, grad_checkpointing=cfg.grad_checkpointing, fsdp=cfg.fsdp, compile=bool(cfg.compile)
        )
        # After sharding, so under FSDP each rank averages its own shards. Starts as a copy (official).
        self.ema = EMA(self.model, schedule=EMASchedule.from_config(cfg))
        if init_ema is not None:
            checkpointing.load_full_ema(self.ema, init_ema)
        self.params = [p for p in self.train_model.parameters() if p.requires_grad]
        self.opt = optimizer(self.params, cfg)
        self.amp_dtype = _PRECISIONS[cfg.precision]
        self.scaler = torch.amp.GradScaler(self.device.type) if cfg.precision == "fp16" else None
        self.callbacks: list[TrainCallback] = list(callbacks or [])
        self.step = self.epoch = self.batch_in_epoch = 0
        self.bad_in_a_row = self.skipped_total = 0
        self.last_checkpoint: Optional[Path] = None
        self.logger = RunLogger(self.run_dir, enabled=info.is_main, tensorboard=cfg.tensorboard)
        self._report_bad = BadImageReport(self.run_dir / BAD_IMAGE_LOG, self.logger)
        if init_report is not None and pretrained is not None:
            self.logger.info(init_from.describe(pretrained, init_report))
        for path, reason in skipped:
            self.logger.info(f"--resume auto skipped {path}: {reason}")
        if self.resume_from is not None:
            self._load(self.resume_from)
        if info.is_main:
            for p in remove_stray_temps(ckpt_dir(self.run_dir)):
                self.logger.info(f"removed {p.name}, left by an interrupted checkpoint write")

    def _build(self, cfg: TrainConfig, model_cfg: ModelConfig, diffusion_cfg: DiffusionConfig) -> tuple:
        """Data, model and objective; fine-tuning: the source's weights (and its architecture when the
        run names no size). Returns the model and (pretrained, its EMA, the report) for fine-tuning."""
        pretrained = init_from.read_pretrained(cfg.init_from) if cfg.init_from else None
        if pretrained is not None and model_cfg.name is None and model_cfg.depth is None:
            model_cfg = init_from.architecture_of(pretrained.config, model_cfg)
        self.source, model, self.model_cfg, self.diffusion = build_components(
            cfg, model_cfg, diffusion_cfg, self.device
        )
        init_ema, init_report = None, None
        if pretrained is not None and self.resume_from is None:  # a resumed run has it all in its checkpoint
            init_ema, init_report = init_from.initialise(model, pretrained)
        return model, pretrained, init_ema, init_report

    @staticmethod
    def _check_config(cfg: TrainConfig, info: DistInfo, callbacks: Optional[Sequence[TrainCallback]] = None) -> None:
        """The config's own checks (:meth:`TrainConfig.validate`) for this run's number of processes and hooks."""
        cfg.validate(info.world_size)
        if (cfg.sample_every or cfg.eval_every) and not callbacks:
            raise UserError(
                "sample_every/eval_every need their hooks: pass callbacks=dit.evaluation.hooks.training_callbacks(cfg)"
            )

    # -- checkpoints -------------------------------------------------------------------------

    def config_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_cfg.to_dict(),
            "diffusion": self.diffusion_cfg.to_dict(),
            "train": self.cfg.to_dict(),
            "data": dict(self.source.header),
            "sampling": self.sampling_defaults.to_dict(),
        }

    def save(self) -> Path:
        """Write checkpoint ``<step>.pt`` and the EMA safetensors beside it (rank 0), prune old ones.

        A failed write (full disk, unwritable folder) leaves the earlier files as they were and
        stops every rank with a message naming the last good checkpoint.
        """
        model_sd, ema_sd, opt_sd = checkpointing.gather_full_state(self.model, self.ema, self.opt, self.cfg.fsdp)
        path = checkpoint_path(ckpt_dir(self.run_dir), self.step)
        failure: Optional[UserError] = None
        if self.info.is_main:
            try:
                self._write_checkpoint(path, model_sd, ema_sd, opt_sd)
            except UserError as e:
                failure = e
        # In place of a barrier: every rank learns whether rank 0's write failed (none hangs waiting).
        if all_reduce_max(1.0 if failure is not None else 0.0, self.info):
            raise UserError(
                f"{failure or f'rank 0 could not write {path}'}; "
                f"last good checkpoint: {self.last_checkpoint or 'none'} "
                "— fix the disk, then continue with --resume auto"
            ) from failure
        self.last_checkpoint = path
        return path

    def _write_checkpoint(self, path: Path, model_sd: dict, ema_sd: dict, opt_sd: dict) -> None:
        checkpointing.write_trainer_checkpoint(self, path, model_sd, ema_sd, opt_sd)
        self.logger.info(f"saved checkpoint {path}")

    def _load(self, path: Path) -> None:
        state = checkpointing.restore_trainer(self, path)
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.skipped_total = int(state.get("skipped_steps", 0))
        self.last_checkpoint = path
        self.logger.info(f"resumed from {path} at step {self.step} (epoch {self.epoch}, batch {self.batch_in_epoch})")

    def ema_model(self) -> nn.Module:
        """A fresh plain model holding the EMA weights (for sampling hooks)."""
        m = build_model(self.model_cfg).to(self.device)
        if self.cfg.fsdp:
            ema_sd = checkpointing.gather_full_state(self.model, self.ema, self.opt, fsdp=True)[1]
        else:
            ema_sd = self.ema.state_dict()
        m.load_state_dict(ema_sd, strict=True)
        return m.eval()

    # -- one step ----------------------------------------------------------------------------

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def train_step(self, items: torch.Tensor, labels: torch.Tensor) -> tuple[dict[str, torch.Tensor], bool]:
        """One optimiser step on this rank's share of a global batch; returns (losses, stepped)."""
        cfg = self.cfg
        r = draw_step_randomness(
            cfg.seed,
            self.step,
            cfg.global_batch_size,
            self.info.rank,
            self.info.world_size,
            self.source.latent_shape,
            self.diffusion.num_timesteps,
            self.model_cfg.class_dropout_prob,
            bool(self.source.flip),
            self.device,
            self.timesteps_from_coins,
        )
        items = items.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        x0, y = self.source.prepare(items, labels, r.flip_mask, r.posterior_gens)  # (n, C, h, w), (n,)
        # Unconditional runs always use the null class; otherwise the per-example coin drops labels.
        drop = torch.ones_like(r.drop_mask) if self.source.num_classes == 0 else r.drop_mask
        for group in self.opt.param_groups:
            group["lr"] = learning_rate(cfg, self.step)
        self.train_model.train()  # label dropout is driven by drop_mask, the model draws nothing
        with self._autocast():
            losses = self.diffusion.training_losses(
                self.train_model, x0, r.t, model_kwargs={"y": y, "drop_mask": drop}, noise=r.noise
            )
        loss = losses["loss"].mean()
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        if self.scaler is not None:
            self.scaler.unscale_(self.opt)
        max_norm = cfg.grad_clip if cfg.grad_clip else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm, foreach=True)
        if hasattr(grad_norm, "full_tensor"):  # FSDP2: a DTensor over the shards
            grad_norm = grad_norm.full_tensor()
        # The one host sync of a step: gradients are all-reduced, so every rank agrees.
        finite = bool(torch.isfinite(grad_norm).item())
        if self.scaler is not None:
            self.scaler.step(self.opt)  # skips the update itself when gradients overflowed
            self.scaler.update()
        elif finite:
            self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if finite:
            self.ema.update(self.model)
        losses = {k: v.detach().float().mean() for k, v in losses.items() if k in ("loss", "mse", "vb")}
        losses["grad_norm"] = grad_norm.detach().float()
        return losses, finite

    # -- the loop ----------------------------------------------------------------------------

    def _loader(self, start_batch: int) -> torch.utils.data.DataLoader:
        perm = epoch_permutation(self.cfg.seed, self.epoch, len(self.source.dataset))
        batches = list(
            local_batches(perm, self.cfg.global_batch_size, self.info.rank, self.info.world_size, start_batch)
        )
        return torch.utils.data.DataLoader(
            self.source.dataset,
            batch_sampler=batches,
            num_workers=self.cfg.num_workers,
            pin_memory=self.device.type == "cuda",
        )

    def fit(self) -> TrainResult:
        """Train until a budget or a signal says stop; always end with a checkpoint."""
        cfg, info = self.cfg, self.info
        if info.is_main:
            write_run_info(self.run_dir, self.config_dict(), info.world_size)
            if self.settings is not None:
                write_settings(self.run_dir, self.settings)
            self._report_bad(self.source.bad_images)
        self._log_start()
        bar = progress_bar(self._total_steps(), self.step, info.is_main)
        started = time.monotonic()
        window = LossWindow()
        saved_at = self.step if self.last_checkpoint is not None else None
        reason = None
        try:
            with StopSignals() as signals:
                while reason is None:
                    reason = stop_reason(cfg, self.step, self.epoch, signals, started, info)
                    if reason is not None:
                        break
                    for items, labels in self._loader(self.batch_in_epoch):
                        losses, finite = self.train_step(items, labels)
                        self.step += 1
                        self.batch_in_epoch += 1
                        window.add(losses, finite)
                        self._count_bad_step(finite)
                        bar.update(1)
                        if self.step % cfg.log_every == 0:
                            self._log(window, bar)
                            window = LossWindow()
                        if self.step % cfg.ckpt_every == 0 and self.bad_in_a_row == 0:  # none mid-streak
                            self.save()
                            saved_at = self.step
                        for cb in due(self.callbacks, self.step):
                            cb(self.step, self.ema_model(), self)
                        reason = stop_reason(cfg, self.step, self.epoch, signals, started, info)
                        if reason is not None:
                            break
                    else:  # the epoch ran out
                        self.epoch += 1
                        self.batch_in_epoch = 0
        finally:
            bar.close()  # ends the bar's line even when an error follows
        if saved_at != self.step:
            self.save()
        if info.is_main:
            self._report_bad(self.source.bad_images)
        self.logger.info(f"stopped at step {self.step} ({reason}); last checkpoint {self.last_checkpoint}")
        self.logger.close()
        assert reason is not None  # the loop ends only with a stop reason
        return TrainResult(self.step, self.epoch, reason, self.last_checkpoint, self.skipped_total, info.is_main)

    def _total_steps(self) -> Optional[int]:
        cfg = self.cfg
        steps_per_epoch = len(self.source.dataset) // cfg.global_batch_size
        return cfg.max_steps if cfg.max_steps is not None else (cfg.epochs * steps_per_epoch if cfg.epochs else None)

    def _log_start(self) -> None:
        self.logger.info(
            f"training {self.model_cfg.name or 'custom DiT'} ({sum(p.numel() for p in self.model.parameters()):,} "
            f"params) on {len(self.source.dataset)} examples, global batch {self.cfg.global_batch_size} over "
            f"{self.info.world_size} process(es), precision {self.cfg.precision}"
        )
        self.logger.info(f"speed: {self.speed.describe()}")

    def _count_bad_step(self, finite: bool) -> None:
        """Reset or extend the streak of non-finite steps; a streak of ``max_bad_steps`` stops the run."""
        if finite:
            self.bad_in_a_row = 0
            return
        self.bad_in_a_row += 1
        self.skipped_total += 1
        if self.bad_in_a_row >= self.cfg.max_bad_steps:
            self.logger.info(f"{self.bad_in_a_row} non-finite steps in a row at step {self.step}")
            self.logger.close()
            raise UserError(
                f"the loss was non-finite for {self.bad_in_a_row} steps in a row (step {self.step}); last good "
                f"checkpoint: {self.last_checkpoint or 'none'} — resume from it with a lower --lr, --grad-clip "
                "or --precision fp32"
            )

    def _log(self, window: LossWindow, bar) -> None:
        """Mean loss terms over the window's finite steps (all ranks), speed, lr, skipped count."""
        metrics = window.metrics(self.info, self.device)
        metrics.update(
            images_per_sec=metrics["steps_per_sec"] * self.cfg.global_batch_size,
            lr=learning_rate(self.cfg, self.step - 1),
            skipped=float(self.skipped_total),
        )
        if "loss" in metrics:
            bar.set_postfix(loss=f"{metrics['loss']:.4f}")
        self.logger.log_metrics(self.step, metrics)
        if self.info.is_main:
            self._report_bad(self.source.bad_images)


def train(
    cfg: TrainConfig,
    model_cfg: ModelConfig,
    diffusion_cfg: Optional[DiffusionConfig] = None,
    callbacks: Optional[Sequence[TrainCallback]] = None,
    settings: Optional[str] = None,
    sampling: Optional[SamplingDefaults] = None,
) -> TrainResult:
    """Run one training job (one process, or one rank under torchrun) and return how it ended.

    ``callbacks`` run with the EMA model every K steps; ``dit train`` passes
    ``dit.evaluation.hooks.training_callbacks(cfg, sampling_cfg)`` for ``--sample-every``/``--eval-every``.
    ``settings`` is the TOML the run folder keeps as ``config.toml`` (``dit train`` passes every table it
    resolved; default: these three configs as given). ``sampling``: the sampler, steps and guidance the
    checkpoints record (default: the objective's, :meth:`SamplingDefaults.of`).
    """
    if settings is None:
        given = {"train": cfg, "model": model_cfg, "diffusion": diffusion_cfg or DiffusionConfig()}
        settings = to_toml(given, header="the settings train() was called with")
    info = init_distributed(cfg.device)
    lock = None
    try:
        cfg.validate_folders()  # before the lock makes the run folder (and its parents) inside the data
        lock = lock_run_folder(cfg.results_dir, info)  # one run per folder; torchrun ranks share rank 0's lock
        trainer = Trainer(cfg, model_cfg, diffusion_cfg or DiffusionConfig(), info, callbacks, settings, sampling)
        if lock is not None and (stale := lock.describe_stale()):
            trainer.logger.info(stale)
        result = trainer.fit()
        # Ranks leave together: a gloo rank that tore its group down while its peer was still
        # leaving hung in the group's destructor, about 1 run in 4 of a 4-step 2-rank job (py-spy).
        barrier(info)
        return result
    finally:
        if lock is not None:
            lock.release()
        cleanup(info)
