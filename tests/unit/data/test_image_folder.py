"""ImageFolder: ADM centre crop, colour-mode conversion, layouts and bad files."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from dit.data.image_folder import ImageFolder, center_crop_arr, load_image, to_rgb
from dit.errors import UserError
from tests.helpers.data import make_image_folder, random_image


def adm_center_crop_reference(pil_image, image_size):
    """guided-diffusion's formulation: the crop done by numpy slicing on the resized array."""
    while min(*pil_image.size) >= 2 * image_size:
        pil_image = pil_image.resize(tuple(x // 2 for x in pil_image.size), resample=Image.BOX)
    scale = image_size / min(*pil_image.size)
    pil_image = pil_image.resize(tuple(round(x * scale) for x in pil_image.size), resample=Image.BICUBIC)
    arr = np.array(pil_image)
    cy, cx = (arr.shape[0] - image_size) // 2, (arr.shape[1] - image_size) // 2
    return arr[cy : cy + image_size, cx : cx + image_size]


@pytest.mark.parametrize("w,h,size", [(100, 60, 16), (60, 100, 16), (16, 16, 16), (5, 3, 8), (200, 33, 8), (64, 64, 8)])
def test_center_crop_matches_adm(w, h, size):
    img = random_image(np.random.default_rng(w * h), w, h)
    out = np.asarray(center_crop_arr(img, size))
    assert out.shape == (size, size, 3)
    np.testing.assert_array_equal(out, adm_center_crop_reference(img, size))


def test_center_crop_halves_with_box_first():
    # 64x64 → 8: BOX halving 64→32→16 (16 < 2*8 stops), BICUBIC to 8. A 2x2 checker survives
    # BOX halving only as its average, so the crop of a fine checker is flat grey.
    checker = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)
    out = np.asarray(center_crop_arr(Image.fromarray(checker).convert("RGB"), 8))
    assert np.abs(out.astype(int) - 128).max() <= 1


@settings(max_examples=25, deadline=None)
@given(w=st.integers(1, 70), h=st.integers(1, 70), size=st.integers(1, 12))
def test_center_crop_any_size(w, h, size):
    img = Image.new("RGB", (w, h), (10, 200, 30))
    out = np.asarray(center_crop_arr(img, size))
    assert out.shape == (size, size, 3)
    assert np.abs(out.astype(int) - [10, 200, 30]).max() <= 2  # a flat image stays flat


def test_modes_convert_to_rgb(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red → white
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    out = np.asarray(to_rgb(rgba))
    assert tuple(out[0, 0]) == (255, 0, 0) and tuple(out[1, 1]) == (255, 255, 255)
    half = np.asarray(to_rgb(Image.new("LA", (2, 2), (0, 128))))  # black at alpha 128 over white
    assert abs(int(half[0, 0, 0]) - 127) <= 1
    gray = np.asarray(to_rgb(Image.new("L", (2, 2), 77)))
    assert gray.shape == (2, 2, 3) and (gray == 77).all()
    pal = Image.new("P", (2, 2), 1)
    pal.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    assert tuple(np.asarray(to_rgb(pal))[0, 0]) == (10, 20, 30)
    pal_t = pal.copy()
    pal_t.info["transparency"] = 1
    assert tuple(np.asarray(to_rgb(pal_t))[0, 0]) == (255, 255, 255)
    # 16-bit grayscale through a real PNG round trip: 65535 → white, 257*100 → 100.
    arr16 = np.array([[65535, 25700], [0, 65535]], dtype=np.uint16)
    Image.fromarray(arr16).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as im:
        assert im.mode.startswith("I")
        out16 = np.asarray(to_rgb(im))
    assert out16[0, 0].tolist() == [255] * 3 and out16[0, 1].tolist() == [100] * 3 and out16[1, 0].tolist() == [0] * 3


def test_load_image_range_and_upscale(tmp_path):
    Image.new("RGB", (3, 2), (255, 0, 128)).save(tmp_path / "small.png")  # smaller than the crop
    x = load_image(tmp_path / "small.png", 8)
    assert x.shape == (3, 8, 8) and x.dtype == torch.float32
    torch.testing.assert_close(x[:, 4, 4], torch.tensor([1.0, -1.0, 128 / 127.5 - 1]))


def test_folder_layout_labels_and_no_flip(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=("b", "a", "c"), per_class=2)
    (root / "a" / "notes.txt").write_text("not an image, ignored by extension")
    ds = ImageFolder(root, 8, num_classes=3)
    assert ds.class_names == ["a", "b", "c"] and len(ds) == 6
    assert [ds[i][1] for i in range(6)] == [0, 0, 1, 1, 2, 2]
    x, _ = ds[0]
    with Image.open(ds.files[0]) as im:
        expect = np.asarray(center_crop_arr(im.convert("RGB"), 8), dtype=np.float32) / 127.5 - 1
    torch.testing.assert_close(x, torch.from_numpy(expect).permute(2, 0, 1))  # not mirrored
    assert x.min() >= -1 and x.max() <= 1


def test_unconditional_takes_any_layout(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "flat" / "deep" / "er").mkdir(parents=True)
    random_image(rng, 9, 9).save(tmp_path / "flat" / "x.jpg")
    random_image(rng, 9, 9, "L").save(tmp_path / "flat" / "deep" / "er" / "y.bmp")
    ds = ImageFolder(tmp_path / "flat", 8, unconditional=True)
    assert len(ds) == 2 and ds.num_classes == 0 and ds.class_names == []
    assert [ds[i][1] for i in range(2)] == [0, 0] and ds[1][0].shape == (3, 8, 8)


def test_layout_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        ImageFolder(tmp_path / "nope", 8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no class sub-folders"):
        ImageFolder(tmp_path / "empty", 8)
    with pytest.raises(UserError, match="holds no images"):
        ImageFolder(tmp_path / "empty", 8, unconditional=True)
    flat = tmp_path / "flat"
    flat.mkdir()
    random_image(np.random.default_rng(0), 4, 4).save(flat / "a.png")
    with pytest.raises(UserError, match="--unconditional"):
        ImageFolder(flat, 8)
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), per_class=1)
    (root / "c").mkdir()
    with pytest.raises(UserError, match=r"class folder .*c holds no images"):
        ImageFolder(root, 8)
    (root / "c").rmdir()
    with pytest.raises(UserError, match="--num-classes 5 disagrees .* 2 class folders .*pass --num-classes 2"):
        ImageFolder(root, 8, num_classes=5)
    with pytest.raises(UserError, match="--on-bad-image"):
        ImageFolder(root, 8, on_bad_image="ignore")


def _folder_with_bad_files(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), per_class=2)
    (root / "a" / "1.png").write_bytes(b"this is not a png")  # non-image with an image extension
    good = (root / "b" / "0.png").read_bytes()
    (root / "b" / "1.png").write_bytes(good[: len(good) // 2])  # truncated
    return root


def test_bad_images_skip_lazily(tmp_path):
    ds = ImageFolder(_folder_with_bad_files(tmp_path), 8, on_bad_image="skip")
    assert len(ds) == 4
    items = [ds[i] for i in range(4)]
    assert sorted(p.split("/")[-2] + "/" + p.split("/")[-1] for p in ds.bad_images) == ["a/1.png", "b/1.png"]
    # a bad file is replaced by the next good one: a/1 → b/0, b/1 → a/0 (wrapping around)
    torch.testing.assert_close(items[1][0], items[2][0])
    assert items[1][1] == 1 and items[3][1] == 0
    torch.testing.assert_close(items[3][0], items[0][0])


def test_bad_images_scan_and_fail(tmp_path):
    root = _folder_with_bad_files(tmp_path)
    ds = ImageFolder(root, 8)
    bad = ds.scan()
    assert len(bad) == 2 and len(ds) == 2 and ds.labels == [0, 1]
    with pytest.raises(UserError, match=r"cannot read image .*a/1\.png.*--on-bad-image skip"):
        ImageFolder(root, 8, on_bad_image="fail")[1]
    with pytest.raises(UserError, match=r"a/1\.png"):
        ImageFolder(root, 8, on_bad_image="fail").scan()


@settings(max_examples=30, deadline=None)
@given(payload=st.binary(max_size=300), cut=st.integers(0, 400), ext=st.sampled_from([".png", ".jpg", ".gif", ".webp"]))
def test_any_file_content_is_an_image_or_a_user_error(tmp_path_factory, payload, cut, ext):
    """Random bytes, or a real image cut anywhere: skip never raises, fail raises only UserError."""
    import io

    root = tmp_path_factory.mktemp("fuzz")
    (root / "a").mkdir()
    buf = io.BytesIO()
    random_image(np.random.default_rng(cut), 9, 7).save(buf, format={".jpg": "JPEG"}.get(ext, ext[1:].upper()))
    (root / "a" / f"real{ext}").write_bytes(buf.getvalue()[:cut] if cut < 400 else buf.getvalue())
    (root / "a" / f"junk{ext}").write_bytes(payload)
    ds = ImageFolder(root, 4, on_bad_image="skip")
    try:
        x, y = ds[0]
        assert x.shape == (3, 4, 4) and y == 0 and torch.isfinite(x).all()
    except UserError as e:  # every file unreadable
        assert "no readable image" in str(e)
    for i in range(2):
        try:
            ImageFolder(root, 4, on_bad_image="fail")[i]
        except UserError as e:
            assert "cannot read image" in str(e)
