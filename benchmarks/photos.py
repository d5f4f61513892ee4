"""Natural photos you can train and score on without a download: crops of the photographs that ship
inside scikit-image's and scikit-learn's wheels, one class per photograph.

``python -m benchmarks.photos --out DIR [--image-size 32]`` writes an image folder tree:

    DIR/train/<class>/000000.png ...       training crops
    DIR/reference/<class>/000000.png ...   held-out crops (the FID reference, the probe's test set)
    DIR/manifest.json                      every crop's source box, the held-out tiles, the settings

How the crops are cut. Each photograph is divided into a 4 × 4 grid of tiles; 4 of them, one per
tile row and one per tile column (a seeded permutation, so the held-out area is spread over the
whole picture), are held out. A crop is a square box whose side is a random fraction (log-uniform
in ``FRACTION``) of the photograph's short side, resampled to the image size (Lanczos): training
boxes touch no held-out tile, reference boxes lie inside one, so no reference crop shares a source
pixel with any training crop. Boxes that are nearly flat (pixel standard deviation below
``MIN_STD``, e.g. the retina photograph's black border) are drawn again. The same seed gives the
same boxes at every image size, so ``--image-size 64`` renders the same crops at 64 px.

The photographs are read as files from the installed packages (nothing fetched: scikit-image's
pooch-downloaded images are not used). Licences: scikit-image's data README; scikit-learn's
``load_sample_images`` (china.jpg, flower.jpg: CC BY 2.0 / public domain per its docs).

Scoring helpers (Inception pool features through :mod:`dit.evaluation.features`, the Fréchet
distance against the held-out crops and, CIFAR's convention, against other training crops, and the
class-agreement probe: a logistic regression on Inception features) live here too, so
``benchmarks/time_to_quality.py --data photos`` and ad-hoc checkpoints share one protocol.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from dit.runtime.checkpoint import atomic_write

# (class name, package, file inside the package's data folder): the RGB photographs of each wheel.
# motorcycle_right.png is left out (the other half of a stereo pair: a near copy of motorcycle_left).
PHOTOS = (
    ("astronaut", "skimage", "astronaut.png"),
    ("cat", "skimage", "chelsea.png"),
    ("coffee", "skimage", "coffee.png"),
    ("galaxies", "skimage", "hubble_deep_field.jpg"),
    ("tissue", "skimage", "ihc.png"),
    ("motorcycle", "skimage", "motorcycle_left.png"),
    ("retina", "skimage", "retina.jpg"),
    ("rocket", "skimage", "rocket.jpg"),
    ("temple", "sklearn", "china.jpg"),
    ("flower", "sklearn", "flower.jpg"),
)
GRID = 4  # tiles per side; GRID of the GRID² tiles are held out
FRACTION = (1 / 6, 1 / 4)  # box side / the photograph's short side (log-uniform)
MIN_STD = 4.0  # boxes flatter than this (0..255 grey levels) are drawn again
MAX_TRIES = 200_000
MANIFEST = "manifest.json"
SPLITS = ("train", "reference")

Box = tuple[int, int, int]  # (top, left, side) in source pixels


@dataclass(frozen=True)
class PhotosExport:
    """Where an export lives and what it holds."""

    root: str
    image_size: int
    seed: int
    num_train: int
    num_reference: int
    classes: tuple[str, ...]

    @property
    def train_dir(self) -> Path:
        return Path(self.root) / "train"

    @property
    def reference_dir(self) -> Path:
        return Path(self.root) / "reference"


def photo_path(package: str, name: str) -> Path:
    """The file as installed with its package (no network: a missing file is an error, never a fetch)."""
    if package == "skimage":
        import skimage.data

        folder = Path(skimage.data.__file__).parent
    else:
        import sklearn.datasets

        folder = Path(sklearn.datasets.__file__).parent / "images"
    path = folder / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not in the installed {package} wheel")
    return path


def load_photo(package: str, name: str) -> np.ndarray:
    """uint8 (H, W, 3) RGB (an alpha channel dropped)."""
    from PIL import Image

    with Image.open(photo_path(package, name)) as im:
        return np.asarray(im.convert("RGB"))


def held_out_tiles(height: int, width: int, rng: np.random.Generator) -> list[tuple[int, int, int, int]]:
    """GRID tiles, one per tile row and column: (top, left, bottom, right) in pixels (bottom/right exclusive)."""
    rows = [round(i * height / GRID) for i in range(GRID + 1)]
    cols = [round(j * width / GRID) for j in range(GRID + 1)]
    perm = rng.permutation(GRID)
    return [(rows[i], cols[perm[i]], rows[i + 1], cols[perm[i] + 1]) for i in range(GRID)]


def overlaps(box: Box, tile: tuple[int, int, int, int]) -> bool:
    top, left, side = box
    return top < tile[2] and tile[0] < top + side and left < tile[3] and tile[1] < left + side


def inside(box: Box, tile: tuple[int, int, int, int]) -> bool:
    top, left, side = box
    return tile[0] <= top and top + side <= tile[2] and tile[1] <= left and left + side <= tile[3]


def _side(short: int, rng: np.random.Generator, cap: int) -> int:
    lo, hi = math.log(FRACTION[0] * short), math.log(FRACTION[1] * short)
    return max(1, min(cap, int(round(math.exp(rng.uniform(lo, hi))))))


def draw_boxes(
    photo: np.ndarray, tiles: list[tuple[int, int, int, int]], n: int, held_out: bool, rng: np.random.Generator
) -> list[Box]:
    """``n`` boxes of ``photo`` (H, W, 3): inside one held-out tile (``held_out``) or touching none."""
    height, width = photo.shape[:2]
    short = min(height, width)
    tile_cap = min(min(t[2] - t[0], t[3] - t[1]) for t in tiles)
    boxes: list[Box] = []
    for _ in range(MAX_TRIES):
        if len(boxes) == n:
            return boxes
        side = _side(short, rng, tile_cap)
        if held_out:
            t = tiles[rng.integers(len(tiles))]
            box = (int(rng.integers(t[0], t[2] - side + 1)), int(rng.integers(t[1], t[3] - side + 1)), side)
        else:
            box = (int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1)), side)
            if any(overlaps(box, t) for t in tiles):
                continue
        top, left, _ = box
        if photo[top : top + side, left : left + side].std() < MIN_STD:
            continue
        boxes.append(box)
    raise RuntimeError(f"could not place {n} boxes in {MAX_TRIES} tries (photo {height}×{width})")


def render(photo: np.ndarray, box: Box, image_size: int) -> np.ndarray:
    """The box resampled to uint8 (S, S, 3) (Lanczos: antialiased when shrinking)."""
    from PIL import Image

    top, left, side = box
    crop = Image.fromarray(photo[top : top + side, left : left + side])
    return np.asarray(crop.resize((image_size, image_size), Image.Resampling.LANCZOS))


def build_photos(
    root: str | Path, image_size: int = 32, train_per_class: int = 500, reference_per_class: int = 100, seed: int = 0
) -> PhotosExport:
    """Write the train / reference image folders and the manifest under ``root`` (see the module docstring)."""
    from PIL import Image

    root = Path(root)
    manifest: dict = {"image_size": image_size, "seed": seed, "grid": GRID, "fraction": FRACTION, "classes": {}}
    for c, (name, package, file) in enumerate(PHOTOS):
        photo = load_photo(package, file)  # (H, W, 3)
        rng = np.random.default_rng([seed, c])
        tiles = held_out_tiles(*photo.shape[:2], rng)
        entry = {"source": f"{package}:{file}", "shape": list(photo.shape[:2]), "held_out_tiles": tiles}
        for split, n in (("train", train_per_class), ("reference", reference_per_class)):
            boxes = draw_boxes(photo, tiles, n, split == "reference", rng)
            folder = root / split / f"{c:02d}_{name}"
            folder.mkdir(parents=True, exist_ok=True)
            for i, box in enumerate(boxes):
                Image.fromarray(render(photo, box, image_size)).save(folder / f"{i:06d}.png")
            entry[split] = boxes
        manifest["classes"][f"{c:02d}_{name}"] = entry
    (root / MANIFEST).write_text(json.dumps(manifest))
    return PhotosExport(
        str(root),
        image_size,
        seed,
        train_per_class * len(PHOTOS),
        reference_per_class * len(PHOTOS),
        tuple(manifest["classes"]),
    )


# ---- scoring: Inception features, FID, and the class-agreement probe ----


def inception_features(images: np.ndarray, batch_size: int = 50) -> np.ndarray:
    """uint8 (N, H, W, 3) → pool features (N, 2048) of the FID Inception (weights from `dit convert-inception`)."""
    from dit.evaluation.features import inception_extractor

    return inception_extractor().features(images, batch_size=batch_size)["pool"]


def fid(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between two sets of pool features (N, D), as `dit eval` computes it."""
    from dit.evaluation.metrics import feature_statistics, frechet_distance

    return frechet_distance(feature_statistics(a), feature_statistics(b))


@dataclass
class Probe:
    """A linear classifier on standardised Inception pool features (class agreement of generated images)."""

    mean: np.ndarray  # (D,)
    scale: np.ndarray  # (D,)
    weight: np.ndarray  # (K, D)
    bias: np.ndarray  # (K,)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """(N, D) → (N,) class ids."""
        return np.argmax(((features - self.mean) / self.scale) @ self.weight.T + self.bias, axis=1)

    def agreement(self, features: np.ndarray, labels: np.ndarray) -> float:
        return float(np.mean(self.predict(features) == labels))


def fit_probe(features: np.ndarray, labels: np.ndarray, c: float = 0.1) -> Probe:
    """Multinomial logistic regression (L2, inverse strength ``c``) on standardised features (N, D)."""
    from sklearn.linear_model import LogisticRegression

    mean = features.mean(axis=0)
    scale = features.std(axis=0) + 1e-6
    lr = LogisticRegression(C=c, max_iter=2000).fit((features - mean) / scale, labels)
    return Probe(mean, scale, lr.coef_.astype(np.float64), lr.intercept_.astype(np.float64))


FEATURES = "inception_features.npz"
NUM_REAL = 1000  # training crops whose features fit the probe; the floor at N uses the first N of them


def real_features(root: str | Path, n: int = NUM_REAL, seed: int = 0) -> dict[str, np.ndarray]:
    """Inception pool features of ``n`` class-balanced training crops ("train", the probe's), of ``n`` other
    training crops ("train_b", the training-set reference), and of every reference crop, with labels.

    Cached in ``root/inception_features.npz`` (keyed by ``n`` and ``seed``): they cost ~0.2 CPU-s per image.
    "train" is the first half of one balanced draw of 2n, so an older cache without "train_b" is extended.
    """
    from dit.study.setup import balanced_subset
    from dit.evaluation.io import load_images

    cache = Path(root) / FEATURES
    out: dict[str, np.ndarray] = {}
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as f:
            if int(f["n"]) == n and int(f["seed"]) == seed:
                out = {k: f[k] for k in f.files}
    if "train_b" in out:
        return out
    train = load_images(Path(root) / "train")
    labels = train.require_labels(root)
    idx = balanced_subset(labels, 2 * n, seed)  # round-robin by class: each half is class-balanced
    if len(idx) < n + 2:
        raise ValueError(f"{root}/train has {len(idx)} crops; the scores need {n} and at least 2 more")
    if not out:
        reference = load_images(Path(root) / "reference")
        out = {
            "train": inception_features(train.images[idx[:n]]),
            "train_labels": labels[idx[:n]],
            "reference": inception_features(reference.images),
            "reference_labels": reference.require_labels(root),
            "n": np.array(n),
            "seed": np.array(seed),
        }
    out["train_b"] = inception_features(train.images[idx[n:]])  # n of them, or all that are left
    atomic_write(cache, lambda f: np.savez(f, **out))
    return out


def real_floor(feats: dict[str, np.ndarray], n: Optional[int] = None) -> tuple[dict, Probe]:
    """The real-vs-real FIDs at a samples file's N and the probe's agreement with real reference crops (fit on
    all "train" crops). Held out: the first ``n`` training crops (class-balanced) against the reference crops.
    Training set (CIFAR's convention, FID against the training images): those ``n`` crops against "train_b"."""
    n = len(feats["train"]) if n is None else n
    if n > len(feats["train"]):
        raise ValueError(f"the real floor has {len(feats['train'])} training crops' features, {n} asked")
    probe = fit_probe(feats["train"], feats["train_labels"])
    return {
        "fid_real_vs_real": fid(feats["train"][:n], feats["reference"]),
        "fid_train_real_vs_real": fid(feats["train"][:n], feats["train_b"]),
        "real_agreement": probe.agreement(feats["reference"], feats["reference_labels"]),
        "num_real": n,
        "num_reference": int(len(feats["reference"])),
    }, probe


def sample_features(path: str | Path, images: np.ndarray) -> np.ndarray:
    """Inception pool features of a samples file's images, cached beside it (``X.pool.npz``, keyed by a hash
    of the images, so a rewritten samples file is scored afresh)."""
    import hashlib

    digest = hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()
    cache = Path(path).with_suffix(".pool.npz")
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as f:
            if str(f["sha256"]) == digest:
                return f["pool"]
    pool = inception_features(images)
    atomic_write(cache, lambda f: np.savez(f, pool=pool, sha256=np.array(digest)))
    return pool


def score_samples(
    root: str | Path, samples: str | Path, n: int = NUM_REAL, seed: int = 0, first: Optional[int] = None
) -> dict:
    """Inception FID of a samples file (``dit sample --out X.npz``, labelled; its ``first`` samples, which are
    class-balanced as `dit sample` writes them) against the held-out reference crops ("fid") and against
    other training crops ("fid_train"), class agreement by the probe, and the real floors at the same N."""
    from dit.evaluation.io import load_images

    feats = real_features(root, n, seed)
    s = load_images(samples)
    labels = s.require_labels(samples)[:first]
    floor, probe = real_floor(feats, min(n, len(labels)))
    f = sample_features(samples, s.images)[:first]
    return {
        "fid": fid(f, feats["reference"]),
        "fid_train": fid(f, feats["train_b"]),
        "class_agreement": probe.agreement(f, labels),
        "num_samples": int(len(f)),
        **floor,
    }


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write the crops (train/, reference/, manifest.json)")
    b.add_argument("--out", required=True, help="folder to write")
    b.add_argument("--image-size", type=int, default=32)
    b.add_argument("--train-per-class", type=int, default=500)
    b.add_argument("--reference-per-class", type=int, default=100)
    b.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("score", help="Inception FID and probe agreement of samples files (and the real floor)")
    s.add_argument("--data", required=True, help="a folder written by `build`")
    s.add_argument("samples", nargs="*", help="labelled .npz files from `dit sample`")
    s.add_argument("--num-real", type=int, default=NUM_REAL, help="training crops in the real-vs-real FID and probe")
    s.add_argument("--first", type=int, default=None, help="score only each file's first K samples")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    a = parse_args(argv)
    if a.command == "build":
        export = build_photos(a.out, a.image_size, a.train_per_class, a.reference_per_class, a.seed)
        print(json.dumps(asdict(export)))
        return 0
    if not a.samples:
        print(json.dumps(real_floor(real_features(a.data, a.num_real))[0]))
    for path in a.samples:
        result = score_samples(a.data, path, a.num_real, first=a.first)
        suffix = f".first{a.first}.photos.json" if a.first else ".photos.json"
        Path(path).with_suffix(suffix).write_text(json.dumps(result, indent=1))
        shown = ("fid", "fid_train", "class_agreement", "num_samples")
        print(path, json.dumps({k: result[k] for k in shown}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
