"""Local paths or Hugging Face hub ids → a local file or folder to load weights from.

``resolve_pretrained("facebook/DiT-XL-2-256")`` downloads (or finds in the cache) the repository's
configs and weights through ``huggingface_hub`` and returns the local folder (a diffusers layout:
``model_index.json``, ``transformer/``, ``vae/``) or the one weights file of a plain repository.
``org/name/path/in/repo.pt`` names one file of a repository. A string that exists on disk is
returned unchanged. Knows nothing about DiT beyond which file names hold weights.

The cache and offline mode are read from the environment at call time (``HF_HUB_CACHE``,
``HF_HUB_OFFLINE=1``: cache only, no network), so a test or a user can set them after
``huggingface_hub`` was imported. Safetensors are preferred: pickle files (``.pt``/``.bin``) are
fetched only when a repository has no safetensors (they are still read with
``torch.load(weights_only=True)`` by the loaders, which refuses anything but tensors).
Every failure (offline and not cached, unknown repository or revision, no network) is one
:class:`~dit.errors.UserError` line.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

from dit.errors import UserError

_SAFE_PATTERNS = ["*.json", "*.safetensors", "*.txt"]
_PICKLE_PATTERNS = ["*.json", "*.pt", "*.pth", "*.bin", "*.txt"]
_IGNORE = ["*.fp16.*", "*.msgpack", "*.onnx", "*.h5", "*.ckpt"]  # other frameworks / half-precision variants
_WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
_DIFFUSERS_MARKERS = ("model_index.json", "config.json", "transformer/config.json")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(/[\w./-]+)?$")
_TRUE = ("1", "true", "yes", "on")


def offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` asks for the cache only."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def looks_like_hub_id(text: str) -> bool:
    """``org/name`` or ``org/name/file`` that is not an existing path (and not ``dir/file.pt``).

    A missing path whose first folder exists here (``results/run/checkpoints/x.pt``) is a mistyped
    local path: asking the hub for it would only wait through the client's retries before failing.
    """
    if Path(text).expanduser().exists() or not _HUB_ID.match(text):
        return False
    parts = text.split("/")
    if Path(parts[0]).expanduser().is_dir():
        return False
    return not (len(parts) == 2 and parts[1].endswith(_WEIGHT_SUFFIXES))  # a missing local file, not a repo


def resolve_pretrained(name: str | os.PathLike, revision: Optional[str] = None) -> Path:
    """The local path of ``name``: itself when it exists, else the hub download (see the module doc)."""
    text = str(name)
    path = Path(text).expanduser()
    if path.exists():
        if revision is not None:
            raise UserError(f"revision={revision!r} applies to hub ids only; {text} is a local path")
        return path
    if not looks_like_hub_id(text):
        raise UserError(
            f"{text} does not exist; pass a checkpoint file (.pt, .safetensors), a diffusers folder or a "
            "Hugging Face hub id such as facebook/DiT-XL-2-256"
        )
    parts = text.split("/")
    repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:]) or None
    if filename is not None:
        return Path(_download(repo_id, revision, filename=filename))
    folder = Path(_download(repo_id, revision, allow_patterns=_SAFE_PATTERNS))
    if not any(folder.rglob("*.safetensors")):  # an older repository: its pickles, read weights-only
        folder = Path(_download(repo_id, revision, allow_patterns=_PICKLE_PATTERNS))
    return pick_weights(folder, repo_id)


def pick_weights(folder: Path, repo_id: str) -> Path:
    """A diffusers folder itself, else the repository's one weights file (EMA export preferred)."""
    if any((folder / m).is_file() for m in _DIFFUSERS_MARKERS):
        return folder
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES))
    safe = [p for p in files if p.suffix == ".safetensors"]
    for group in (safe, [p for p in safe if p.name.endswith(".ema.safetensors")], files):
        if len(group) == 1:
            return group[0]
    if not files:
        raise UserError(f"the hub repository {repo_id} holds no weights (.safetensors, .pt) and no diffusers layout")
    names = ", ".join(str(p.relative_to(folder)) for p in files[:6])
    raise UserError(f"the hub repository {repo_id} holds several weight files ({names}); name one as {repo_id}/FILE")


def _download(repo_id: str, revision: Optional[str], filename: Optional[str] = None, allow_patterns=None) -> str:
    """One ``huggingface_hub`` call with the environment's cache and offline mode; errors → one line."""
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    cache_dir, local_only = os.environ.get("HF_HUB_CACHE") or None, offline()
    where = f"{repo_id}" + (f"@{revision}" if revision else "")
    try:
        if filename is not None:
            return hf_hub_download(
                repo_id, filename, revision=revision, cache_dir=cache_dir, local_files_only=local_only
            )
        return snapshot_download(
            repo_id,
            allow_patterns=allow_patterns,
            ignore_patterns=_IGNORE,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_only,
        )
    except GatedRepoError:
        raise UserError(
            f"the hub repository {repo_id} is gated; accept its licence and log in (hf auth login)"
        ) from None
    except RepositoryNotFoundError:
        raise UserError(
            f"{repo_id} is neither a local path nor a model on the Hugging Face hub (private ones need hf auth login)"
        ) from None
    except RevisionNotFoundError:
        raise UserError(f"the hub repository {repo_id} has no revision {revision!r}") from None
    except LocalEntryNotFoundError:
        mode = "HF_HUB_OFFLINE is set" if offline() else "the hub cannot be reached"
        raise UserError(
            f"{where} is not in the Hugging Face cache ({os.environ.get('HF_HUB_CACHE') or 'default cache'}) "
            f"and {mode}; "
            f"download it where you are online (hf download {repo_id}) or pass a local path"
        ) from None
    except EntryNotFoundError:  # after LocalEntryNotFoundError, its subclass
        raise UserError(f"the hub repository {where} has no file {filename}") from None
    except Exception as e:  # connection and HTTP errors of the hub client (several libraries' types)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(
            f"could not fetch {where} from the Hugging Face hub ({first[:160]}); pass a local path"
        ) from None
