"""The run folder: the checkpoint a run resumes from (past damaged ones) and ``run.json`` (config, git, world size)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from dit.config import TrainConfig
from dit.errors import UserError
from dit.runtime.checkpoint import (
    atomic_write,
    atomic_write_json,
    latest_checkpoint,
    newest_intact_checkpoint,
    verify_checkpoint,
)
from dit.runtime.revision import git_revision

BAD_IMAGE_LOG = "bad_images.tsv"  # path<TAB>reason of each unreadable image skipped (run folder)
RUN_INFO = "run.json"
SETTINGS = "config.toml"  # the resolved settings; `dit train --config RUN/config.toml` repeats the run


def ckpt_dir(run_dir: Path) -> Path:
    """``<run>/checkpoints``: where ``<step>.pt`` files live."""
    return Path(run_dir) / "checkpoints"


def resolve_resume(cfg: TrainConfig) -> tuple[Optional[Path], list[tuple[Path, str]]]:
    """The checkpoint to resume from, and the newer ones ``--resume auto`` skipped as damaged (with why).

    Refuses a run folder that holds another run without --resume. ``auto`` takes the newest
    checkpoint whose bytes match the checksum saved with it; an explicit ``--resume FILE`` that
    does not match is an error (the user asked for that file).
    """
    run_dir = Path(cfg.results_dir)
    if cfg.resume is None:
        if (run_dir / RUN_INFO).exists() or latest_checkpoint(ckpt_dir(run_dir)) is not None:
            raise UserError(
                f"{run_dir} already holds a run; pass --resume auto to continue it or choose another --results-dir"
            )
        return None, []
    if cfg.resume == "auto":
        path, skipped = newest_intact_checkpoint(ckpt_dir(run_dir))
        if path is None and skipped:
            why = "; ".join(f"{p.name}: {reason}" for p, reason in skipped)
            raise UserError(
                f"no intact checkpoint in {ckpt_dir(run_dir)} ({why}); restore one from a backup or "
                "start again in another --results-dir"
            )
        return path, skipped
    path = Path(cfg.resume)
    if not path.is_file():
        raise UserError(f"--resume {path}: no such checkpoint; pass an existing .pt file or --resume auto")
    return verify_checkpoint(path), []


def write_run_info(run_dir: Path, config: dict[str, Any], world_size: int) -> Path:
    """``<run>/run.json``: the full config, the git revision and the number of processes (atomic)."""
    info = {"config": config, "git": git_revision(), "world_size": world_size}
    return atomic_write_json(Path(run_dir) / RUN_INFO, info, default=str)


def write_settings(run_dir: Path, text: str) -> Path:
    """``<run>/config.toml``: the resolved settings of this invocation, as TOML (atomic)."""
    data = text.encode("utf-8")
    return atomic_write(Path(run_dir) / SETTINGS, lambda f: f.write(data))
