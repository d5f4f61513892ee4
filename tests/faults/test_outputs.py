"""One output policy (issue 27 item 1): a command that writes where the user said never replaces what is
there unasked. Without --overwrite: exit 2, one line naming --overwrite and what would be lost, the old
output byte-identical. With it: replaced, and never half-written (a write that fails leaves the old
output). Interrupted `dit sample` runs still resume from their shards."""

import hashlib

import numpy as np
import pytest

from dit.cli.main import main

from tests.faults.helpers import assert_refused, run_cli
from tests.helpers.sample import FAST, trained_run

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return trained_run(tmp_path_factory.mktemp("run"))


def _sample(ckpt, out, *extra):
    return ["sample", "--ckpt", ckpt, "--out", out, "--num-samples", "3", *FAST, *extra]


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _classifier(tmp_path):
    from dit.evaluation.classifier import ClassifierArch, SmallClassifier, save_classifier

    return "classifier:" + str(save_classifier(SmallClassifier(ClassifierArch(3, 8, width=4)), tmp_path / "c.st"))


@pytest.mark.parametrize("name", ["old.npz", "old.png", "old_dir/"])
def test_sample_into_an_existing_output_stops_and_keeps_it(capsys, ckpt, tmp_path, name):
    out = tmp_path / name.rstrip("/")
    if name.endswith("/"):
        out.mkdir()
        (out / "000000.png").write_bytes(b"hours of work")
    else:
        out.write_bytes(b"hours of work")
    line = assert_refused(capsys, _sample(ckpt, str(tmp_path / name)), tmp_path, str(out), "already exists")
    assert "--overwrite" in line and ("13 bytes, written" in line or "a folder of 1 file" in line), line
    assert not (tmp_path / f"{out.name}.shards").exists()  # refused before any sampling


@pytest.mark.parametrize("name", ["old.npz", "old_dir/"])
def test_sample_overwrite_replaces_the_output_whole(capsys, ckpt, tmp_path, name):
    out = tmp_path / name.rstrip("/")
    if name.endswith("/"):
        out.mkdir()
        (out / "stale.png").write_bytes(b"old")
    else:
        out.write_bytes(b"old")
    code, _, err = run_cli(capsys, _sample(ckpt, str(tmp_path / name), "--overwrite"))
    assert code == 0, err
    if name.endswith("/"):
        assert sorted(p.name for p in out.iterdir()) == ["000000_class0.png", "000001_class1.png", "000002_class2.png"]
    else:
        with np.load(out) as f:
            assert f["arr_0"].shape == (3, 8, 8, 3)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert f"{out.name}.protocol.json" in left and not [n for n in left if n.startswith(".") or "shards" in n], left


def test_an_overwrite_that_fails_mid_write_leaves_the_old_file(capsys, ckpt, tmp_path, monkeypatch):
    import dit.sampling.writers as writers

    out = tmp_path / "old.npz"
    out.write_bytes(b"hours of work")
    real = np.savez

    def full_disk(f, **arrays):
        if "arr_0" in arrays and len(arrays["arr_0"]) == 3:  # the merged file, not a shard
            f.write(b"half of the new file")
            raise OSError(28, "No space left on device")
        return real(f, **arrays)

    monkeypatch.setattr(writers.np, "savez", full_disk)
    line = assert_refused(capsys, _sample(ckpt, out, "--overwrite"), tmp_path / "none", "No space left on device")
    assert "the previous file is kept" in line and out.read_bytes() == b"hours of work"
    assert not list(tmp_path.glob(".old.npz.*.tmp"))


def test_an_interrupted_sample_still_resumes_from_its_shards(capsys, ckpt, tmp_path, monkeypatch):
    import dit.sampling.to_file as to_file

    out = tmp_path / "s.npz"
    straight = tmp_path / "straight.npz"
    assert run_cli(capsys, _sample(ckpt, straight, "--batch-size", "1"))[0] == 0

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # after every shard was written, before the merge

    monkeypatch.setattr(to_file, "merge_shards", interrupted)
    assert main([str(a) for a in _sample(ckpt, out, "--batch-size", "1")]) == 130  # as after Ctrl-C
    monkeypatch.undo()
    assert not out.exists() and len(list((tmp_path / "s.npz.shards").glob("*.npz"))) == 3
    code, _, err = run_cli(capsys, _sample(ckpt, out, "--batch-size", "1"))  # no --overwrite needed
    assert code == 0, err
    assert _digest(out) == _digest(straight)


def test_a_sample_killed_after_its_merge_resumes_without_overwrite(capsys, ckpt, tmp_path, monkeypatch):
    import dit.sampling.card as card

    out, straight = tmp_path / "s.npz", tmp_path / "straight.npz"
    assert run_cli(capsys, _sample(ckpt, straight))[0] == 0

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the output is written, its card and the shard clean-up are not

    monkeypatch.setattr(card, "write_card", killed)
    assert main([str(a) for a in _sample(ckpt, out)]) == 130
    monkeypatch.undo()
    assert out.exists() and (tmp_path / "s.npz.shards").is_dir()
    code, _, err = run_cli(capsys, _sample(ckpt, out))  # the same command finishes the run
    assert code == 0, err
    assert _digest(out) == _digest(straight) and not (tmp_path / "s.npz.shards").exists()
    assert run_cli(capsys, _sample(ckpt, out))[0] == 2  # finished: now it is an output like any other


def test_make_reference_into_an_existing_file_stops_and_overwrite_replaces_it(capsys, tmp_path):
    images = tmp_path / "images.npz"
    np.savez(images, arr_0=np.zeros((4, 8, 8, 3), np.uint8))
    ref = tmp_path / "ref.npz"
    ref.write_bytes(b"a reference that took an hour")
    features = _classifier(tmp_path)
    argv = ["make-reference", images, ref, "--features", features, "--device", "cpu"]
    line = assert_refused(capsys, argv, tmp_path, f"OUT.npz {ref} already exists", "--overwrite")
    assert "29 bytes" in line
    assert run_cli(capsys, [*argv, "--overwrite"])[0] == 0
    with np.load(ref) as f:
        assert {"arr_0", "mu", "sigma"} <= set(f.files)


def test_eval_into_an_existing_out_stops_before_the_long_part(capsys, tmp_path):
    samples = tmp_path / "s.npz"
    np.savez(samples, arr_0=np.zeros((4, 8, 8, 3), np.uint8))
    out = tmp_path / "result.json"
    out.write_text('{"fid": 2.27}')
    argv = ["eval", samples, samples, "--features", _classifier(tmp_path), "--device", "cpu", "--out", out]
    assert_refused(capsys, argv, tmp_path, f"--out {out} already exists", "--overwrite")
    assert run_cli(capsys, [*argv, "--overwrite"])[0] == 0 and '"fid"' in out.read_text()


def test_convert_and_convert_inception_name_overwrite_and_what_would_be_lost(capsys, ckpt, tmp_path):
    dst = tmp_path / "w.safetensors"
    dst.write_bytes(b"weights")
    assert_refused(capsys, ["convert", ckpt, dst], tmp_path, f"DST {dst} already exists (7 bytes", "--overwrite")
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    line = assert_refused(capsys, ["convert", ckpt, folder, "--to", "diffusers"], tmp_path, "a folder of 1 file")
    assert "--overwrite" in line
    out = tmp_path / "inception.pth"
    out.write_bytes(b"converted")
    assert_refused(capsys, ["convert-inception", "--out", out], tmp_path, f"--out {out} already exists", "--overwrite")


def test_extract_latents_never_mixes_its_shards_into_other_files_and_overwrite_replaces_a_cache(capsys, tmp_path):
    from dit.data import read_header
    from tests.helpers.data import make_image_folder, save_tiny_vae

    vae = save_tiny_vae(tmp_path / "vae")
    data = make_image_folder(tmp_path / "data", classes=("x", "y"), per_class=2)
    base = ["extract-latents", "--data-path", data, "--vae", vae, "--batch-size", "2", "--device", "cpu"]
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "holiday.jpg").write_bytes(b"not to be mixed with shards")
    line = assert_refused(capsys, [*base, "--image-size", "8", "--out", photos], tmp_path, "not a latent cache")
    assert "holiday.jpg" in line and "--overwrite" in line
    cache = tmp_path / "cache"
    assert run_cli(capsys, [*base, "--image-size", "8", "--out", cache])[0] == 0
    assert_refused(capsys, [*base, "--image-size", "16", "--out", cache], tmp_path, "image size")  # as before
    code, _, err = run_cli(capsys, [*base, "--image-size", "16", "--out", cache, "--overwrite"])
    assert code == 0, err
    assert read_header(cache)["image_size"] == 16 and not list(tmp_path.glob(".cache.*"))
