"""Messages a user can cause that used to leak internals or give unsafe advice (issue 27): missing
`dit eval` inputs, files of the wrong kind given as checkpoints or `.npz`, malicious pickles,
`Pipeline.to` with a device that is not one. Each is one line that says what the file is and what
to do, never a traceback, never torch's or numpy's advice to load a file unsafely."""

import numpy as np
import pytest

from tests.faults.helpers import assert_refused

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
