"""Image files of every kind people have: converted to RGB with the right values, or skipped and
recorded (also from DataLoader worker processes, through the shared bad-image log)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dit.data.image_folder import ImageFolder, load_image, read_bad_image_log

from .helpers import save_png

pytestmark = pytest.mark.faults


def _pixel(path, size=4) -> torch.Tensor:
    """The (3,) colour of a uniform image after loading, back in 0..255."""
    img = load_image(path, size)  # (3, S, S) in [-1, 1]
    assert img.shape == (3, size, size)
    return ((img + 1) * 127.5).round().reshape(3, -1).mean(1)


@pytest.mark.parametrize(
    "mode, arr, rgb",
    [
        ("L", np.full((6, 6), 77, np.uint8), (77, 77, 77)),
        ("RGBA", np.tile(np.array([200, 10, 10, 0], np.uint8), (6, 6, 1)), (255, 255, 255)),  # transparent → white
        ("RGBA", np.tile(np.array([200, 10, 10, 255], np.uint8), (6, 6, 1)), (200, 10, 10)),
        ("LA", np.tile(np.array([40, 255], np.uint8), (6, 6, 1)), (40, 40, 40)),
        ("I;16", np.full((6, 6), 65535, np.uint16), (255, 255, 255)),
        ("I;16", np.full((6, 6), 257 * 100, np.uint16), (100, 100, 100)),
    ],
)
def test_modes_convert_to_the_right_rgb(tmp_path, mode, arr, rgb):
    p = save_png(tmp_path / "x.png", arr, None if mode == "I;16" else mode)
    with Image.open(p) as im:
        assert im.mode == mode
    assert _pixel(p).tolist() == list(map(float, rgb))


def test_palette_image_converts_to_its_palette_colour(tmp_path):
    img = Image.new("P", (6, 6), 3)
    img.putpalette([0, 0, 0] * 3 + [12, 200, 99] + [0, 0, 0] * 252)
    img.save(tmp_path / "p.png")
    assert _pixel(tmp_path / "p.png").tolist() == [12.0, 200.0, 99.0]


def test_small_image_is_upscaled_to_the_crop(tmp_path):
    p = save_png(tmp_path / "tiny.png", np.full((2, 3, 3), 150, np.uint8))
    assert _pixel(p, size=8).tolist() == [150.0, 150.0, 150.0]


def test_skipped_images_reach_the_shared_log_from_worker_processes(tmp_path):
    """Workers hold their own ``bad_images``; the log file sees every skip exactly once per file."""
    root = tmp_path / "data"
    for c in range(2):
        for k in range(3):
            save_png(root / f"c{c}" / f"{k}.png", np.full((8, 8, 3), 50 * c, np.uint8))
    bad = [root / "c0" / "bad.png", root / "c1" / "zz.png"]
    for b in bad:
        b.write_bytes(b"not an image at all")
    ds = ImageFolder(root, 8, on_bad_image="skip")
    ds.bad_image_log = tmp_path / "bad_images.txt"
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2)
    labels = torch.cat([y for _, y in loader])
    assert len(labels) == len(ds) == 8  # the length never changes: a bad file is replaced by the next good one
    assert ds.bad_images == {}  # the main process decoded nothing itself
    found = read_bad_image_log(ds.bad_image_log)
    assert sorted(found) == sorted(map(str, bad))
    assert all("UnidentifiedImageError" in r for r in found.values())
    assert read_bad_image_log(tmp_path / "absent.txt") == {}


def test_worker_wrapped_user_error_keeps_only_its_message():
    """What torch's DataLoader re-raises for a UserError in a worker, reduced to the original line."""
    from dit.errors import UserError, one_line

    def worker():
        raise UserError("cannot read image x.png (bad); fix or delete it")

    class Boom(torch.utils.data.Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, i):
            worker()

    with pytest.raises(UserError) as info:
        next(iter(torch.utils.data.DataLoader(Boom(), num_workers=1)))
    assert "Traceback" in str(info.value)  # torch's wrapping, which the CLI must not print
    assert one_line(info.value) == "cannot read image x.png (bad); fix or delete it"
    assert one_line(UserError("two\n  lines")) == "two lines"
