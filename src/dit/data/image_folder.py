"""Image folders with ADM's centre crop, robust to the images people actually have.

Layout: one sub-folder per class (sorted names → label indices, walked recursively), or any
layout in unconditional mode (labels all 0, a flat folder is fine). Every image is converted to
RGB (grayscale, palette, CMYK, 16-bit; transparent images composited on white), centre-cropped
the way ADM and DiT do (:func:`center_crop_arr`) and returned as float32 (3, H, W) in [-1, 1],
not flipped: the random mirror is applied later, per example, by ``TrainingSource.prepare``.

Bad files (corrupt, truncated, not an image) are found lazily when loaded, or all at once by
:meth:`ImageFolder.scan`. ``on_bad_image="fail"`` raises :class:`UserError` naming the file;
``"skip"`` records it in ``ImageFolder.bad_images`` (for the run log) and returns the next good
image instead, so the dataset length (and hence every rank's share) never changes mid-epoch.
DataLoader workers and other ranks hold their own copies of ``bad_images``; set
``bad_image_log`` to a file and every process appends its skips there (one ``path<TAB>reason``
line each, ``O_APPEND``), which :func:`read_bad_image_log` reads back for the run log.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from dit.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")
BAD_IMAGE_POLICIES = ("skip", "fail")


def center_crop_arr(pil_image: Image.Image, image_size: int) -> Image.Image:
    """ADM's centre crop (guided-diffusion ``image_datasets.py``, used by DiT's ``train.py``).

    1. While the short side is at least 2 * image_size, halve both sides with a BOX filter
       (cheap, alias-free downscaling of large photos).
    2. Resize with BICUBIC so the short side equals image_size (this also upscales small images).
    3. Cut the central image_size x image_size square (offsets rounded down).
    """
    while min(pil_image.size) >= 2 * image_size:
        pil_image = pil_image.resize((pil_image.width // 2, pil_image.height // 2), resample=Image.Resampling.BOX)
    scale = image_size / min(pil_image.size)
    pil_image = pil_image.resize(
        (round(pil_image.width * scale), round(pil_image.height * scale)), resample=Image.Resampling.BICUBIC
    )
    w, h = pil_image.size
    left, top = (w - image_size) // 2, (h - image_size) // 2
    return pil_image.crop((left, top, left + image_size, top + image_size))


def _composite_on_white(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB from any PIL mode: transparency composited on white, 16-bit/float rescaled."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info):
        return _composite_on_white(img)
    if img.mode.startswith("I") or img.mode == "F":
        # 16-bit (I;16*) and 32-bit integer / float grayscale: PIL's convert("L") clips at 255.
        arr = np.asarray(img, dtype=np.float64)
        if img.mode == "F" and arr.size and arr.max() <= 1.0:
            arr = arr * 255.0
        elif arr.size and arr.max() > 255:
            arr = arr / 257.0  # 0..65535 → 0..255
        gray = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    return img.convert("RGB")


def load_image(path: os.PathLike, image_size: int) -> torch.Tensor:
    """One image file → float32 (3, image_size, image_size) in [-1, 1]. Raises OSError/ValueError
    (and PIL's errors) for files that are not readable images."""
    with Image.open(path) as img:
        img.load()  # decode now: truncated files fail here, not later
        rgb = to_rgb(img)
    arr = np.asarray(center_crop_arr(rgb, image_size), dtype=np.float32)  # (H, W, 3)
    return torch.from_numpy(arr / 127.5 - 1.0).permute(2, 0, 1).contiguous()  # (3, H, W)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _walk_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively), in a deterministic order."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / f for f in sorted(filenames) if _is_image(f))
    return found


def index_folder(
    root: str | os.PathLike, num_classes: Optional[int] = None, unconditional: bool = False
) -> Tuple[list[Path], list[int], list[str]]:
    """(files, labels, class_names) of an image folder; UserError with a fix for bad layouts."""
    root = Path(root)
    if not root.exists():
        raise UserError(f"data folder {root} does not exist; pass --data-path pointing at your images")
    if not root.is_dir():
        raise UserError(f"--data-path {root} is a file, not a folder; pass the folder that holds the images")
    exts = "/".join(e[1:] for e in IMAGE_EXTENSIONS)
    if unconditional:
        files = _walk_images(root)
        if not files:
            raise UserError(f"data folder {root} holds no images ({exts}); add images or fix --data-path")
        return files, [0] * len(files), []
    class_names = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_names:
        hint = "pass --unconditional to train without labels" if _walk_images(root) else "add images"
        raise UserError(
            f"data folder {root} has no class sub-folders; put each class's images in its own sub-folder or {hint}"
        )
    files, labels = [], []
    for label, name in enumerate(class_names):
        found = _walk_images(root / name)
        if not found:
            raise UserError(f"class folder {root / name} holds no images ({exts}); add images or remove the folder")
        files.extend(found)
        labels.extend([label] * len(found))
    if num_classes is not None and num_classes != len(class_names):
        shown = ", ".join(class_names[:5]) + (", ..." if len(class_names) > 5 else "")
        raise UserError(
            f"--num-classes {num_classes} disagrees with {root}, which has {len(class_names)} class folders "
            f"({shown}); pass --num-classes {len(class_names)} or fix the folder"
        )
    return files, labels, class_names


def append_bad_image(log: os.PathLike, path: os.PathLike, reason: str) -> None:
    """Append ``path<TAB>reason`` to ``log`` in one O_APPEND write (safe from many processes)."""
    line = f"{path}\t{' '.join(str(reason).split())[:300]}\n".encode()
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read_bad_image_log(log: os.PathLike) -> dict[str, str]:
    """path → reason of every file in a ``bad_image_log`` (first reason wins; {} if no file)."""
    found: dict[str, str] = {}
    try:
        text = Path(log).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return found
    for line in text.splitlines():
        path, _, reason = line.partition("\t")
        if path:
            found.setdefault(path, reason)
    return found


class ImageFolder(torch.utils.data.Dataset):
    """``dataset[i] -> (image (3, S, S) float32 in [-1, 1], label int)``; see the module docstring."""

    def __init__(
        self,
        root: str | os.PathLike,
        image_size: int,
        num_classes: Optional[int] = None,
        unconditional: bool = False,
        on_bad_image: str = "skip",
    ) -> None:
        if on_bad_image not in BAD_IMAGE_POLICIES:
            raise UserError(f"--on-bad-image {on_bad_image!r} is not one of {BAD_IMAGE_POLICIES}")
        if int(image_size) <= 0:
            raise UserError(f"--image-size must be positive, got {image_size}")
        self.root = Path(root)
        self.image_size = int(image_size)
        self.unconditional = unconditional
        self.on_bad_image = on_bad_image
        self.files, self.labels, self.class_names = index_folder(root, num_classes, unconditional)
        self.num_classes = 0 if unconditional else len(self.class_names)
        self.bad_images: dict[str, str] = {}  # path → reason (per process: DataLoader workers keep their own)
        self.bad_image_log: Optional[Path] = None  # shared file every process appends its skips to

    def __len__(self) -> int:
        return len(self.files)

    def try_load(self, i: int) -> Optional[torch.Tensor]:
        """The image at ``i``, or None (recorded in ``bad_images``) if unreadable and skipping."""
        path = self.files[i]
        if str(path) in self.bad_images:
            return None
        try:
            return load_image(path, self.image_size)
        except Exception as e:  # PIL raises OSError, ValueError, SyntaxError, DecompressionBombError...
            reason = f"{type(e).__name__}: {e}"
            if self.on_bad_image == "fail":
                raise UserError(
                    f"cannot read image {path} ({reason}); fix or delete it, or pass --on-bad-image skip"
                ) from e
            self.bad_images[str(path)] = reason
            if self.bad_image_log is not None:
                append_bad_image(self.bad_image_log, path, reason)
            return None

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, int]:
        for k in range(len(self.files)):
            j = (i + k) % len(self.files)  # a bad file is replaced by the next good one
            image = self.try_load(j)
            if image is not None:
                return image, self.labels[j]
        raise UserError(f"no readable image in {self.root} ({len(self.bad_images)} bad files); check the folder")

    def scan(self, indices: Optional[Sequence[int]] = None) -> dict[str, str]:
        """Decode every image (or ``indices``) now; returns the bad ones (path → reason).

        With ``"skip"`` the bad files are also dropped from the index, so later loads never hit
        them; with ``"fail"`` the first bad file raises UserError.
        """
        for i in range(len(self.files)) if indices is None else indices:
            self.try_load(i)
        if self.bad_images:
            keep = [k for k, f in enumerate(self.files) if str(f) not in self.bad_images]
            if not keep:
                raise UserError(f"none of the {len(self.files)} images in {self.root} is readable; check the folder")
            self.files = [self.files[k] for k in keep]
            self.labels = [self.labels[k] for k in keep]
        return dict(self.bad_images)
