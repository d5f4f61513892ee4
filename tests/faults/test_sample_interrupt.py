"""Ctrl-C during `dit sample` is honoured within one batch (issue 27 item 5).

The cause found for a run that went on writing shards for minutes after SIGINT: Python's default
handler raises KeyboardInterrupt wherever the main thread is, and inside a finalizer (``__del__``)
that exception is printed as "Exception ignored" and lost. The test delivers SIGINT from exactly
there, deterministically; before the fix every shard was then written and the command exited 0."""

import gc
import signal

import pytest

from dit.cli.main import main
from dit.runtime.interrupt import StopRequest

from tests.helpers.sample import FAST, trained_run

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def sigint_as_a_terminal_gives_it():
    """Python's own SIGINT handler, whatever the suite inherited: a shell that starts it in the background
    (`cmd &` without job control) passes SIGINT ignored, and an ignored SIGINT rightly stays ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


class _SignalOnCollect:
    """Sends SIGINT to this process while being finalised, as a Ctrl-C landing in numpy's or PIL's clean-up."""

    def __del__(self):
        signal.raise_signal(signal.SIGINT)


def test_sigint_inside_a_finalizer_stops_sample_within_one_batch(tmp_path, monkeypatch, capsys):
    import dit.sampling.to_file as to_file

    ckpt = trained_run(tmp_path / "run")
    real, written = to_file.write_npz, []

    def write_and_finalise(path, *args, **kwargs):
        written.append(path)
        result = real(path, *args, **kwargs)
        if len(written) == 1:
            obj = _SignalOnCollect()
            del obj  # __del__ runs here: the default handler's KeyboardInterrupt would be swallowed
            gc.collect()
        return result

    monkeypatch.setattr(to_file, "write_npz", write_and_finalise)
    out = tmp_path / "s.npz"
    argv = ["sample", "--ckpt", str(ckpt), "--out", str(out), "--num-samples", "6", "--batch-size", "1", *FAST]
    assert main(argv) == 130
    assert "interrupted" in capsys.readouterr().err
    assert len(written) == 1 and not out.exists()  # stopped before the next batch; the shard stays for a rerun
    assert len(list((tmp_path / "s.npz.shards").glob("*.npz"))) == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back


def test_a_second_sigint_raises_at_once_and_an_ignored_sigint_stays_ignored():
    with StopRequest() as stop:
        signal.raise_signal(signal.SIGINT)
        assert stop.received == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            stop.check()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with StopRequest() as stop:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
