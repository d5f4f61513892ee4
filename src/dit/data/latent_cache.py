"""A sharded cache of VAE posteriors, so training never runs the encoder again.

Why mean and std, for the image and its mirror: fast-DiT's cache freezes one posterior sample
and one flip per image; REPA's drops flips. Storing the posterior moments of both the image and
its horizontal mirror lets training draw a fresh sample ``mean + std * noise`` and a fresh flip
every step, which equals on-the-fly encoding in distribution (and exactly, for the same noise).

Layout of ``CACHE_DIR``:

* ``shard_00000.safetensors`` ...: ``moments`` (n, 2, 2, C, h, w) indexed
  [orig/mirror][mean/std], ``labels`` (n,) int64, ``indices`` (n,) int64 (position in the image
  folder); shard k covers folder positions [k*S, (k+1)*S), minus unreadable files when skipping.
  Each shard is written atomically (temp file, fsync, rename), so a shard that exists is complete
  and a restart skips it (resumable).
* ``dit_latent_cache.json``: the header (format version, VAE id and scale factor, image size,
  latent shape, class names, item count, shard list, bad files), written last by rank 0.

Size: 16 * C * h * w bytes per image in fp32 (64 KiB at 256x256 with the SD VAE, about 84 GB for
ImageNet-1k's 1.28M images), half that with ``dtype="fp16"``.

Parallel: under torchrun, rank r encodes shards r, r+W, ...; rank 0 writes the header after a
barrier. torch.distributed is used only if it is initialised, so one process works without it.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Optional, Sequence

import torch

from dit.data.image_folder import ImageFolder
from dit.errors import UserError, shorten
from dit.runtime.outputs import replace_folder
from dit.runtime.checkpoint import atomic_write

HEADER_NAME = "dit_latent_cache.json"
FORMAT_NAME = "dit-latent-cache"
FORMAT_VERSION = 1
DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


# ---------------------------------------------------------------------------------------- files


def _atomic_write(path: Path, data: bytes) -> None:
    """Temp file + fsync + rename (dit.runtime.checkpoint.atomic_write): a file that exists is complete."""
    atomic_write(path, lambda f: f.write(data))


def shard_name(k: int) -> str:
    return f"shard_{k:05d}.safetensors"


def _cache_file(name: str) -> bool:
    """A file an unfinished cache holds: a shard, or a shard's temp file (``.shard_…``)."""
    return name.lstrip(".").startswith("shard_")


def _build_folder(out: Path, overwrite: bool, codec, image_size: int, rank: int, barrier) -> Path:
    """Where this run writes: ``out`` itself (new, or resumed), or with ``overwrite`` a fresh folder beside
    an existing ``out`` that is renamed over it once the cache is complete."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; pass a folder for the cache")
    build = out.with_name(f".{out.name}.overwrite.tmp") if overwrite and out.is_dir() and any(out.iterdir()) else out
    if build == out:
        _check_resumable(out, codec, image_size)
    elif rank == 0:
        shutil.rmtree(build, ignore_errors=True)  # an earlier --overwrite run that did not finish
        build.mkdir(parents=True)
    barrier()
    build.mkdir(parents=True, exist_ok=True)
    return build


def _check_resumable(out: Path, codec, image_size: int) -> None:
    """``out`` may be absent, empty, an unfinished cache of this command, or a cache of the same settings."""
    if is_latent_cache(out):
        check_header(read_header(out), codec, image_size, where=f"cache in {out}")
    elif out.is_dir() and (other := [p.name for p in out.iterdir() if not _cache_file(p.name)]):
        raise UserError(  # e.g. --out pointing at the image folder: shards would be mixed into its files
            f"--out {out} holds files that are not a latent cache ({shorten(sorted(other)[:3])}, {len(other)} in "
            "all); pass --overwrite to replace the folder (what it holds now is lost), a new or empty folder, "
            "or the folder of an unfinished cache to resume it"
        )


def is_latent_cache(path: str | os.PathLike) -> bool:
    """True if ``path`` is a folder holding a latent-cache header."""
    return (Path(path) / HEADER_NAME).is_file()


def read_header(cache_dir: str | os.PathLike) -> dict:
    path = Path(cache_dir) / HEADER_NAME
    try:
        header = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read latent-cache header {path} ({e}); re-run dit extract-latents") from e
    if header.get("format") != FORMAT_NAME or header.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"{path} is not a version-{FORMAT_VERSION} dit latent cache (format {header.get('format')!r}, "
            f"version {header.get('format_version')!r}); re-run dit extract-latents with this version"
        )
    return header


def check_header(header: dict, codec=None, image_size: Optional[int] = None, where: str = "cache") -> None:
    """UserError naming both values if the cache was made with another VAE, scale or image size."""
    checks = []
    if codec is not None:
        checks += [
            ("VAE id", header["vae"]["id"], codec.id),
            ("scale factor", header["vae"]["scale_factor"], float(codec.scale_factor)),
            ("shift factor", header["vae"].get("shift_factor", 0.0), float(codec.shift_factor)),
        ]
    if image_size is not None:
        checks.append(("image size", header["image_size"], int(image_size)))
    for what, have, want in checks:
        if have != want:
            raise UserError(
                f"latent {where} was made with {what} {have!r} but this run asks for {want!r}; use the same "
                f"--vae/--image-size as the cache or re-run dit extract-latents into a new folder"
            )


def _fingerprint(files: Sequence[Path], labels: Sequence[int], root: Path) -> str:
    """Hash of the folder's file list and labels: a resumed extraction must see the same folder."""
    h = hashlib.sha256()
    for f, y in zip(files, labels):
        h.update(f"{os.path.relpath(f, root)}\t{y}\n".encode())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------------- extract


def _dist():
    """(rank, world, barrier) from torch.distributed if initialised, else a single process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), dist.barrier
    return 0, 1, lambda: None


class _Loadable(torch.utils.data.Dataset):
    """Folder positions → (position, image or None, label); bad files stay None for the shard."""

    def __init__(self, folder, positions: Sequence[int]):
        self.folder, self.positions = folder, list(positions)

    def __len__(self):
        return len(self.positions)

    def __getitem__(self, k):
        i = self.positions[k]
        image = self.folder.try_load(i)
        reason = self.folder.bad_images.get(str(self.folder.files[i]), "")
        return i, image, self.folder.labels[i], reason


def _collate(batch):
    return batch  # images may be None; grouped by the caller


@torch.no_grad()
def encode_both(codec, images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) images → (N, 2, 2, C, h, w) moments: [orig/mirror][mean/std]."""
    n = images.shape[0]
    both = torch.cat([images, images.flip(-1)])  # (2N, 3, H, W): originals then mirrors
    mean, std = codec.encode_moments(both)  # (2N, C, h, w) each
    moments = torch.stack([mean, std], dim=1)  # (2N, 2, C, h, w)
    return torch.stack([moments[:n], moments[n:]], dim=1)  # (N, 2, 2, C, h, w)


def _encode_shard(folder, codec, positions, batch_size, num_workers, dtype, latent_shape):
    loader = torch.utils.data.DataLoader(
        _Loadable(folder, positions), batch_size=batch_size, num_workers=num_workers, collate_fn=_collate
    )
    moments, labels, indices, bad = [], [], [], {}
    for batch in loader:
        good = [b for b in batch if b[1] is not None]
        bad.update({str(folder.files[b[0]]): b[3] for b in batch if b[1] is None})
        if not good:
            continue
        images = torch.stack([b[1] for b in good])  # (B, 3, H, W)
        moments.append(encode_both(codec, images).to(device="cpu", dtype=dtype))
        labels += [b[2] for b in good]
        indices += [b[0] for b in good]
    moments = torch.cat(moments) if moments else torch.empty((0, 2, 2, *latent_shape), dtype=dtype)
    return moments, torch.tensor(labels, dtype=torch.int64), torch.tensor(indices, dtype=torch.int64), bad


def _shard_meta(path: Path) -> Optional[dict]:
    """The metadata of a complete shard file, or None if it is missing or unreadable."""
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            meta["num_items"] = f.get_slice("labels").get_shape()[0]
        return meta
    except Exception:
        return None


def _check_options(dtype: str, batch_size: int, shard_size: int, num_workers: int) -> None:
    if dtype not in DTYPES:
        raise UserError(f"--dtype {dtype!r} is not one of {sorted(DTYPES)}")
    if batch_size <= 0 or shard_size <= 0:
        raise UserError(f"--batch-size and --shard-size must be positive (got {batch_size}, {shard_size})")
    if num_workers < 0:
        raise UserError(f"--num-workers must be >= 0 (0 = decode in this process), got {num_workers}")


def _shard_done(path: Path, expect: dict) -> bool:
    """Whether shard ``path`` exists; one made with other settings (``expect``) is refused in one line."""
    meta = _shard_meta(path)
    if meta is None:
        return False
    differs = {key: (meta.get(key), v) for key, v in expect.items() if meta.get(key) != v}
    if differs:
        key, (have, want) = next(iter(differs.items()))
        raise UserError(
            f"{path} was made with {key} {have!r} but this run has {want!r}; pass a new --out folder "
            f"(or delete the old cache) to start over"
        )
    return True


def extract_latents(
    data_path: os.PathLike,
    codec,
    image_size: int,
    out_dir: os.PathLike,
    batch_size: int = 32,
    shard_size: int = 1024,
    on_bad_image: str = "skip",
    dtype: str = "fp32",
    unconditional: bool = False,
    num_classes: Optional[int] = None,
    num_workers: int = 0,
    log=print,
    overwrite: bool = False,
) -> dict:
    """Encode an image folder (and every image's mirror) into a latent cache; returns the header.

    Resumable: shards already present (and made with the same VAE, size and folder) are skipped.
    ``overwrite``: an existing folder is replaced whole once the new cache is complete.
    Under an initialised torch.distributed, ranks take disjoint shards and rank 0 writes the header.
    """
    from safetensors.torch import save as st_save

    _check_options(dtype, batch_size, shard_size, num_workers)
    latent_shape = codec.latent_shape(image_size)
    folder = ImageFolder(data_path, image_size, num_classes, unconditional, on_bad_image)
    out = Path(out_dir)
    rank, world, barrier = _dist()
    build = _build_folder(out, overwrite, codec, image_size, rank, barrier)
    fingerprint = _fingerprint(folder.files, folder.labels, folder.root)
    expect = {
        "vae_id": codec.id,
        "scale_factor": repr(float(codec.scale_factor)),
        "image_size": str(int(image_size)),
        "dtype": dtype,
        "folder": fingerprint,
        "shard_size": str(shard_size),
    }
    num_shards = (len(folder) + shard_size - 1) // shard_size
    for k in range(rank, num_shards, world):
        path = build / shard_name(k)
        if _shard_done(path, expect):
            log(f"shard {k + 1}/{num_shards}: already done, skipped")
            continue
        positions = range(k * shard_size, min((k + 1) * shard_size, len(folder)))
        moments, labels, indices, bad = _encode_shard(
            folder, codec, positions, batch_size, num_workers, DTYPES[dtype], latent_shape
        )
        meta = dict(expect, bad_images=json.dumps(bad))
        _atomic_write(path, st_save({"moments": moments, "labels": labels, "indices": indices}, metadata=meta))
        log(f"shard {k + 1}/{num_shards}: {len(labels)} images encoded" + (f", {len(bad)} bad skipped" if bad else ""))
    barrier()
    header = _header(build, num_shards, codec, image_size, latent_shape, folder, dtype, fingerprint)
    if rank == 0:
        _atomic_write(build / HEADER_NAME, (json.dumps(header, indent=1) + "\n").encode())
        if build != out:
            replace_folder(build, out)
    barrier()
    return header


def _header(out, num_shards, codec, image_size, latent_shape, folder, dtype, fingerprint) -> dict:
    shards, bad = [], {}
    for k in range(num_shards):
        meta = _shard_meta(out / shard_name(k))
        if meta is None:
            raise UserError(f"shard {out / shard_name(k)} is missing after extraction; re-run dit extract-latents")
        shards.append({"file": shard_name(k), "num_items": int(meta["num_items"])})
        bad.update(json.loads(meta.get("bad_images", "{}")))
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "vae": codec.to_dict(),
        "image_size": int(image_size),
        "latent_shape": list(latent_shape),
        "dtype": dtype,
        "unconditional": bool(folder.unconditional),
        "num_classes": int(folder.num_classes),
        "class_names": list(folder.class_names),
        "num_items": sum(s["num_items"] for s in shards),
        "num_files": len(folder),
        "folder_fingerprint": fingerprint,
        "source": str(folder.root.resolve()),
        "layout": "moments (n, 2, 2, C, h, w) = [orig/mirror][mean/std], unscaled; labels (n,); indices (n,)",
        "shards": shards,
        "bad_images": bad,
    }


# ---------------------------------------------------------------------------------------- load


class LatentCacheDataset(torch.utils.data.Dataset):
    """``dataset[i] -> (moments (2, 2, C, h, w) [orig/mirror][mean/std] in the stored dtype, label)``.

    Shards are memory-mapped through ``safetensors.safe_open`` and read one row at a time, opened
    lazily in each process (handles are not pickled to DataLoader workers).
    """

    def __init__(self, cache_dir: str | os.PathLike, header: Optional[dict] = None) -> None:
        self.root = Path(cache_dir)
        self.header = header if header is not None else read_header(cache_dir)
        self.files = [self.root / s["file"] for s in self.header["shards"]]
        missing = [str(f) for f in self.files if not f.is_file()]
        if missing:
            raise UserError(f"latent cache {self.root} lacks {missing[0]}; re-run dit extract-latents to finish it")
        counts = [int(s["num_items"]) for s in self.header["shards"]]
        self.starts = [0]
        for c in counts:
            self.starts.append(self.starts[-1] + c)
        self._handles: dict[int, object] = {}
        self._labels: dict[int, list] = {}

    def __len__(self) -> int:
        return self.starts[-1]

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_handles"], state["_labels"] = {}, {}
        return state

    def _damaged(self, k: int, e: Exception) -> UserError:
        return UserError(
            f"latent-cache shard {self.files[k]} is damaged ({type(e).__name__}: {e}); re-run the same "
            "dit extract-latents command, which rewrites unreadable shards"
        )

    def _handle(self, k: int):
        from safetensors import safe_open

        if k not in self._handles:
            try:
                handle = safe_open(str(self.files[k]), framework="pt")
                self._labels[k] = handle.get_tensor("labels").tolist()  # tiny: read once per shard
            except Exception as e:  # truncated, overwritten or foreign file
                raise self._damaged(k, e) from None
            self._handles[k] = handle
        return self._handles[k]

    def __getitem__(self, i: int):
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = bisect.bisect_right(self.starts, i) - 1
        j = i - self.starts[k]
        f = self._handle(k)
        try:
            moments = f.get_slice("moments")[j : j + 1][0]  # (2, 2, C, h, w)
        except Exception as e:
            raise self._damaged(k, e) from None
        return moments, self._labels[k][j]
