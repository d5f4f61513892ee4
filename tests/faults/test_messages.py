"""Messages a user can cause that used to leak internals or give unsafe advice (issue 27): missing
`dit eval` inputs, files of the wrong kind given as checkpoints or `.npz`, malicious pickles,
`Pipeline.to` with a device that is not one. Each is one line that says what the file is and what
to do, never a traceback, never torch's or numpy's advice to load a file unsafely."""

import numpy as np
import pytest

from tests.faults.helpers import assert_refused, train_args

UNSAFE_ADVICE = ("weights_only", "allow_pickle", "pickle.load", "unsafe", "Re-running")


def _good_npz(path):
    np.savez(path, arr_0=np.zeros((4, 8, 8, 3), np.uint8))
    return path


@pytest.mark.parametrize("which", ["samples", "reference"])
def test_eval_with_a_missing_input_is_one_line(capsys, tmp_path, which):
    good, missing = _good_npz(tmp_path / "s.npz"), tmp_path / "missing.npz"
    argv = ["eval", missing, good] if which == "samples" else ["eval", good, missing]
    line = assert_refused(capsys, argv, tmp_path, f"{which} {missing} does not exist", "an .npz of arr_0 images")
    assert not any(tmp_path.glob("*.eval.json")) and "Errno" not in line


def test_eval_with_a_reference_of_the_wrong_kind_is_one_line(capsys, tmp_path):
    good, other = _good_npz(tmp_path / "s.npz"), tmp_path / "ref.pt"
    other.write_text("not images")
    assert_refused(capsys, ["eval", good, other], tmp_path, f"reference {other}: expected an .npz")


def _wrong_files(tmp_path):
    """name → (file, words its refusal must hold): a text file, an .npz, two pickles that would run code."""
    from tests.faults.helpers import malicious_pickle

    text = tmp_path / "notes.pt"
    text.write_text("these are my notes, not weights\n")
    npz = _good_npz(tmp_path / "images.npz")
    marker = tmp_path / "PWNED"
    zipped = malicious_pickle(tmp_path / "evil.pt", marker, "torch")
    raw = malicious_pickle(tmp_path / "evil_raw.pt", marker, "raw")
    return marker, {
        "text": (text, ["it is a text file, not a checkpoint"]),
        "npz": (npz, ["it is an .npz of numpy arrays, not a checkpoint"]),
        "evil-zip": (zipped, ["could run code when loaded: refused"]),
        "evil-raw": (raw, ["could run code when loaded: refused"]),
    }


@pytest.mark.parametrize("name", ["text", "npz", "evil-zip", "evil-raw"])
def test_a_wrong_file_as_checkpoint_says_what_it_is_and_never_advises_unsafe_loading(capsys, tmp_path, name, data):
    marker, files = _wrong_files(tmp_path)
    path, words = files[name]
    for argv in (
        ["sample", "--ckpt", path, "--out", tmp_path / "x.npz", "--device", "cpu", "--no-progress"],
        ["convert", path, tmp_path / "y.safetensors"],
        train_args(data, tmp_path / "run", "--max-steps", "1", "--resume", str(path)),
    ):
        line = assert_refused(capsys, argv, tmp_path, str(path), *words)
        assert not any(w.lower() in line.lower() for w in UNSAFE_ADVICE), line
        assert "enforce fail" not in line and "pop from empty list" not in line and "inline_container" not in line
    assert not marker.exists()


def test_a_text_file_named_npz_or_as_inception_weights_is_named_as_such(capsys, tmp_path):
    good = _good_npz(tmp_path / "s.npz")
    text = tmp_path / "fake.npz"
    text.write_text("hello\n")
    for argv in (["eval", text, good], ["eval", good, text, "--no-cache"]):
        line = assert_refused(capsys, argv, tmp_path, f"cannot read {text} as .npz: it is a text file, not an .npz")
        assert not any(w.lower() in line.lower() for w in UNSAFE_ADVICE), line
    line = assert_refused(capsys, ["eval", good, good, "--inception", text], tmp_path, "it is a text file")
    assert not any(w.lower() in line.lower() for w in UNSAFE_ADVICE), line


def test_an_object_array_npz_is_refused_without_the_unsafe_hint(capsys, tmp_path):
    good = _good_npz(tmp_path / "s.npz")
    bad = tmp_path / "objects.npz"
    np.savez(bad, arr_0=np.array([{"a": 1}], dtype=object))
    line = assert_refused(capsys, ["eval", bad, good], tmp_path, "could run code when loaded: refused")
    assert not any(w.lower() in line.lower() for w in UNSAFE_ADVICE), line


@pytest.mark.parametrize("device, words", [("nonsense", "is not a device"), ("cuda:99", "cuda")])
def test_pipeline_to_an_unknown_device_is_one_line_and_moves_nothing(tmp_path, device, words):
    import torch

    from dit.errors import UserError
    from dit.pipeline import Pipeline
    from tests.helpers.sample import trained_run

    pipe = Pipeline.from_pretrained(trained_run(tmp_path), device="cpu")
    if device.startswith("cuda") and torch.cuda.device_count() > 99:
        pytest.skip("this machine has a GPU 99")
    with pytest.raises(UserError, match=f"Pipeline.to device '{device}'") as e:
        pipe.to(device)
    assert words in str(e.value) and "\n" not in str(e.value) and "--device" not in str(e.value)
    assert pipe.device == torch.device("cpu")


@pytest.mark.parametrize("inside", ["run", "runs/today", "."])
def test_a_run_folder_inside_the_data_folder_is_refused_naming_both(capsys, tmp_path, inside):
    from tests.helpers.train import make_image_folder

    data = make_image_folder(tmp_path / "data")
    run = data / inside
    line = assert_refused(
        capsys, train_args(data, run, "--max-steps", "1"), tmp_path, "lies inside --data-path", str(data)
    )
    assert "choose a --results-dir outside the data folder" in line and "holds no images" not in line
    assert sorted(p.name for p in data.iterdir()) == ["class0", "class1", "class2"]  # no run folder made


def test_more_class_labels_than_samples_is_refused(capsys, tmp_path):
    argv = ["sample", "--ckpt", tmp_path / "c.pt", "--out", tmp_path / "x.png", "--class-labels", "0", "1", "2"]
    line = assert_refused(capsys, [*argv, "--num-samples", "2"], tmp_path, "gives 3 labels but --num-samples is 2")
    assert "[2] would never be drawn" in line and "--num-samples 3" in line


def test_a_text_or_truncated_safetensors_file_says_which(capsys, tmp_path):
    from tests.helpers.sample import trained_run
    from dit.runtime.checkpoint import ema_export_path

    export = ema_export_path(trained_run(tmp_path / "run"))
    text, cut = tmp_path / "notes.safetensors", tmp_path / "cut.safetensors"
    text.write_text("hello\n")
    cut.write_bytes(export.read_bytes()[:100])
    argv = ["--out", tmp_path / "x.png", "--device", "cpu", "--no-progress"]
    assert_refused(capsys, ["sample", "--ckpt", text, *argv], tmp_path, "it is a text file, not a safetensors file")
    assert_refused(capsys, ["sample", "--ckpt", cut, *argv], tmp_path, f"{cut} as safetensors: it is truncated")
