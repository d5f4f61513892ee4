"""A Hugging Face cache built by the tests (the layout huggingface_hub writes:
models--org--name/snapshots/<commit>/..., refs/<branch>) and a tiny DiTPipeline repo shaped like
facebook/DiT-XL-2-256 (transformer/, vae/, scheduler/, model_index.json with id2label)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from dit.config import ModelConfig
from dit.data.class_names import imagenet_class_names
from dit.models import build_model
from dit.weights.export import write_diffusers

from tests.helpers.sample import save_vae8

COMMIT = "a" * 40
SYNONYMS = {207: "golden retriever", 0: "tench, Tinca tinca"}  # diffusers' id2label form


def add_to_cache(cache: Path, repo_id: str, files: dict, commit: str = COMMIT, branch: str = "main") -> Path:
    """Put ``files`` (name in repo → local path, file or folder) in a hub-layout cache at ``commit``."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snap = repo / "snapshots" / commit
    for name, src in files.items():
        dst = snap / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    if branch:
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / branch).write_text(commit)
    return snap


def tiny_dit_pipeline(root: Path) -> Path:
    """A 1000-class DiTPipeline folder (1 block, width 32, 32×32 images through a random 8× VAE)."""
    torch.manual_seed(0)
    cfg = ModelConfig(
        name=None, input_size=4, in_channels=4, num_classes=1000, depth=1, hidden_size=32, num_heads=2, patch_size=2
    )
    model = build_model(cfg)
    with torch.no_grad():  # a zero final layer would make every class draw the same image
        for p in model.final_layer.parameters():
            p.add_(0.05 * torch.randn_like(p))
    names = [SYNONYMS.get(i, n) for i, n in enumerate(imagenet_class_names())]
    folder = root / "DiT-XL-2-256"
    write_diffusers(model.state_dict(), cfg, folder, vae=str(save_vae8(root / "vae")), id2label=names)
    return folder


def cache_with_dit_xl(root: Path) -> tuple[Path, Path]:
    """(cache, local folder): the tiny pipeline cached as facebook/DiT-XL-2-256 at COMMIT (refs/main)."""
    folder = tiny_dit_pipeline(root)
    cache = root / "cache"
    add_to_cache(cache, "facebook/DiT-XL-2-256", {p.name: p for p in folder.iterdir()})
    return cache, folder
