"""Property-based tests (hypothesis): no argv makes a sub-command print a traceback, and no file
content makes a loader raise anything but a one-line UserError (or return a valid result)."""

from __future__ import annotations

import contextlib
import io
import itertools
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dit.cli import main as cli
from dit.errors import UserError

pytestmark = pytest.mark.faults

PARSER = cli.build_parser()
SUBPARSERS = PARSER._subparsers._group_actions[0].choices  # name → its ArgumentParser
SAFE_TEXT = st.text(alphabet="abcXYZ019_-=:, é", max_size=10)  # no '/' or '.': never an existing path
VALUES = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        [
            "nan",
            "inf",
            "-inf",
            "1e400",
            "0",
            "-1",
            "",
            " ",
            "cuda",
            "cpu",
            "none",
            "auto",
            "all",
            "DiT-S/8",
            "DiT-XL/2",
            "ema",
            "ddim",
            "ddpm",
            "official",
            "skip",
            "fail",
            "fp16",
        ]
    ),
    SAFE_TEXT,
)


def _options(name: str) -> list[str]:
    return sorted(s for a in SUBPARSERS[name]._actions for s in a.option_strings if s not in ("-h", "--help"))


def argv_for(name: str, draw_list):
    """[name, tokens...]: known options of ``name`` (or unknown ones) each followed by 0-2 values."""
    token = st.one_of(
        st.tuples(st.sampled_from(_options(name)), st.lists(VALUES, max_size=2)).map(lambda t: [t[0], *t[1]]),
        st.lists(VALUES, min_size=1, max_size=1),
        st.sampled_from([["--no-such-flag"], ["-x"], ["--"], ["--help"]]),
    )
    return st.lists(token, max_size=7).map(lambda ts: [name] + [x for t in ts for x in t])


def _call_main(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


def _assert_clean(code, err: str) -> None:
    assert "Traceback" not in err, err
    assert code in (0, 2), (code, err)
    if code == 2:
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and err.rstrip("\n").endswith(lines[0]), err


@pytest.mark.parametrize("name", sorted(SUBPARSERS))
def test_flag_parsing_never_raises(name):
    """Parsing alone (no run): a Namespace, or exit 0 (--help) / exit 2 with one ``error:`` line."""

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(argv=argv_for(name, None))
    def check(argv):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                PARSER.parse_args(argv)
                code = None
            except SystemExit as e:
                code = e.code
        if code is not None:
            _assert_clean(code, err.getvalue())
            if code == 2:
                assert err.getvalue().count("\n") == 1

    check()


@pytest.fixture
def sandbox(monkeypatch):
    """An empty working folder (relative paths in random argv never exist) and no hub access."""
    with tempfile.TemporaryDirectory() as d:
        monkeypatch.chdir(d)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setenv("DIT_CACHE", str(Path(d) / "cache"))
        yield Path(d)


_REQUIRED = {  # what each sub-command needs to get past parsing (paths that do not exist)
    "train": ["--data-path", "nodata", "--results-dir", "run"],
    "sample": ["--ckpt", "no.pt", "--out", "out.npz"],
    "eval": ["s.npz", "r.npz"],
    "convert": ["src.pt", "dst.safetensors"],
    "extract-latents": ["--data-path", "nodata", "--out", "cache"],
    "train-classifier": ["--data-path", "nodata.npz", "--out", "c.safetensors"],
    "flops": [],
    "demo": ["--dry-run", "--out", "demo"],  # the full demo takes minutes: check its flags, print its commands
    "make-reference": ["imgs.npz", "ref.npz"],
    "convert-inception": ["no_torchscript.pt"],  # a missing SRC: never converts the installed 95 MB file
    "serve": ["--ckpt", "no.pt"],  # refused before any server starts
    "study": ["--dry-run", "--out", "study"],  # prints the grid and its costs, trains nothing
}


@pytest.mark.parametrize("name", sorted(SUBPARSERS))
def test_running_random_argv_gives_exit_0_or_2_and_one_line(name, sandbox):
    """The whole command (parse + run) on random flags: exit 0 or 2, never a traceback."""
    assert set(_REQUIRED) == set(SUBPARSERS), "a new sub-command needs its required flags listed here"

    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
    @given(argv=argv_for(name, None))
    def check(argv):
        assume("--help" not in argv)
        code, _, err = _call_main([name, *_REQUIRED[name], *argv[1:]])
        _assert_clean(code, err)
        assert not any(p.name not in ("cache",) for p in sandbox.iterdir() if p.is_file()), "a refused run wrote files"

    check()


SMALL_VALUES = st.one_of(
    st.integers(-3, 24).map(str),
    st.sampled_from(
        [
            "nan",
            "inf",
            "-1",
            "0",
            "0.5",
            "1.5",
            "",
            "cpu",
            "none",
            "ema",
            "ddim",
            "ddpm",
            "dpm++2m",
            "official",
            "all",
            "fp16",
            "bf16",
            "DiT-S/8",
            "skip",
            "fail",
            "abc",
        ]
    ),
)


def _value_for(action) -> st.SearchStrategy:
    """Mostly well-typed values for ``action`` (its choices, small numbers), sometimes junk."""
    kind = getattr(action.type, "__name__", "") if action.type else "str"
    if action.choices:
        typed = st.sampled_from(sorted(map(str, action.choices)))
    elif "int" in kind:
        typed = st.integers(-3, 24).map(str)
    elif "float" in kind:
        typed = st.one_of(st.floats(-2, 30, allow_nan=False).map(repr), st.sampled_from(["nan", "inf", "0", "1"]))
    else:
        typed = st.sampled_from(["cpu", "none", "ema", "ddim", "ddpm", "dpm++2m", "DiT-S/8", "all", "abc", ""])
    return st.one_of(typed, typed, typed, SMALL_VALUES)


def _option_token(action) -> st.SearchStrategy:
    flag = st.sampled_from([s for s in action.option_strings])
    if action.nargs == 0:
        return flag.map(lambda f: [f])
    count = action.nargs if isinstance(action.nargs, int) else 1
    if action.nargs in ("+", "*"):
        values = st.lists(_value_for(action), min_size=1, max_size=3)
    else:
        values = st.lists(_value_for(action), min_size=count, max_size=count)
    return st.tuples(flag, values).map(lambda t: [t[0], *t[1]])


# Flags kept out of the random part: the real inputs of _REAL, and for train the budget, the
# results folder and what makes a 1-step run long (compilation, in-training sampling).
_FIXED = (
    "--help",
    "--ckpt",
    "--out",
    "--data-path",
    "--results-dir",
    "--resume",
    "--max-steps",
    "--epochs",
    "--max-minutes",
    "--compile",
    "--sample-every",
    "--eval-every",
    "--ckpt-every",
)


def small_argv(name: str):
    """Options of ``name`` with plausible small values (so an accepted run stays tiny)."""
    actions = [a for a in SUBPARSERS[name]._actions if a.option_strings and not set(a.option_strings) & set(_FIXED)]
    token = st.one_of([_option_token(a) for a in actions])
    return st.lists(token, max_size=5).map(lambda ts: [x for t in ts for x in t])


@pytest.fixture(scope="module")
def real_inputs(tmp_path_factory):
    """A tiny trained checkpoint, an image folder, an .npz of images and a small classifier."""
    from dit.evaluation.classifier import ClassifierArch, SmallClassifier, save_classifier

    from tests.helpers.train import make_image_folder, train_args

    root = tmp_path_factory.mktemp("real")
    data = make_image_folder(root / "data", per_class=3)
    assert cli.main(train_args(data, root / "run", "--max-steps", "1")) == 0
    npz = root / "s.npz"
    np.savez(npz, arr_0=np.random.default_rng(0).integers(0, 256, (6, 8, 8, 3), dtype=np.uint8), arr_1=np.arange(6) % 3)
    clf = save_classifier(SmallClassifier(ClassifierArch(3, 8, width=4)), root / "c.safetensors")
    ckpt = sorted((root / "run" / "checkpoints").glob("*.pt"))[-1]
    train = train_args(data, root / "unused", "--max-steps", "1")
    cut = train.index("--results-dir")
    train = train[1:cut] + train[cut + 2 :]  # no sub-command name; the results folder is set per example
    return {"ckpt": ckpt, "data": data, "npz": npz, "clf": clf, "train": train}


_REAL = {  # sub-command → its required part, on real inputs (demo: its run is long)
    "sample": lambda r: [
        "--ckpt",
        r["ckpt"],
        "--out",
        "out.npz",
        "--no-progress",
        "--num-samples",
        "2",
        "--num-sampling-steps",
        "2",
    ],
    "convert": lambda r: [r["ckpt"], "w.safetensors", "--overwrite"],
    "eval": lambda r: [r["npz"], r["npz"], "--features", f"classifier:{r['clf']}", "--no-cache"],
    "extract-latents": lambda r: ["--data-path", r["data"], "--vae", "none", "--image-size", "8", "--out", "cache"],
    "flops": lambda r: ["--model", "DiT-S/8"],
    "train": lambda r: [*r["train"], "--results-dir", f"run{next(_RUNS)}"],  # 1 step, a new folder each time
}
_RUNS = itertools.count()


@pytest.mark.parametrize("name", sorted(_REAL))
def test_random_flags_on_real_inputs(name, real_inputs, sandbox):
    """Past the input checks: random small flag values on files that exist give exit 0 or 2."""

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(extra=small_argv(name))
    def check(extra):
        code, _, err = _call_main([name, *map(str, _REAL[name](real_inputs)), *extra])
        _assert_clean(code, err)

    check()


@pytest.mark.parametrize(
    "spec",
    ["cuda", "cuda:3", "banana", "mps", "", None, "cpu"],
    ids=["gpu", "gpu3", "banana", "mps", "empty", "default", "cpu"],
)
def test_device_flag_is_checked(spec):
    from dit.runtime.distributed import resolve_device

    if spec in ("", None, "cpu") or (str(spec).startswith("cuda") and torch.cuda.device_count() > 3):
        assert resolve_device(spec).type in ("cpu", "cuda")
    elif spec.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has the GPU")
    else:
        with pytest.raises(UserError, match="--device"):
            resolve_device(spec)


# ------------------------------------------------------------------------------------- loaders


def _valid_files() -> dict[str, bytes]:
    """Real files of each format the loaders read, as seeds for truncation and bit flips."""
    from PIL import Image

    files = {}
    rng = np.random.default_rng(0)
    for fmt, ext in (("PNG", ".png"), ("JPEG", ".jpg"), ("GIF", ".gif"), ("BMP", ".bmp"), ("WEBP", ".webp")):
        b = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)).save(b, format=fmt)
        files[ext] = b.getvalue()
    b = io.BytesIO()
    np.savez(b, arr_0=rng.integers(0, 256, (2, 4, 4, 3), dtype=np.uint8), arr_1=np.arange(2))
    files[".npz"] = b.getvalue()
    b = io.BytesIO()
    torch.save({"model": {"w": torch.ones(2)}, "config": {}, "step": 1}, b)
    files[".pt"] = b.getvalue()
    from safetensors.torch import save

    files[".safetensors"] = save({"w": torch.ones(2)}, metadata={"model": "{}"})
    return files


VALID = _valid_files()


@st.composite
def damaged(draw, ext: str):
    """A valid file of type ``ext`` truncated, bit-flipped or replaced by random bytes."""
    base = VALID[ext]
    kind = draw(st.sampled_from(["truncate", "flip", "random", "prefix"]))
    if kind == "truncate":
        return base[: draw(st.integers(0, len(base)))]
    if kind == "flip":
        data = bytearray(base)
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        return bytes(data)
    if kind == "prefix":
        return base[:16] + draw(st.binary(max_size=200))
    return draw(st.binary(max_size=300))


def _write(d: Path, name: str, data: bytes) -> Path:
    p = d / name
    p.write_bytes(data)
    return p


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    data=st.one_of(damaged(".png"), damaged(".jpg"), damaged(".gif"), damaged(".bmp"), damaged(".webp")),
    ext=st.sampled_from([".png", ".jpg", ".gif", ".bmp", ".webp"]),
)
def test_image_loaders_give_an_image_or_a_user_error(data, ext):
    from dit.data.image_folder import ImageFolder
    from dit.evaluation.io import load_images

    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        _write(root / "c0", "x" + ext, data) if (root / "c0").mkdir() is None else None
        folder = ImageFolder(root, image_size=8, on_bad_image="fail")
        try:
            img = folder.try_load(0)
            assert img.shape == (3, 8, 8) and img.dtype == torch.float32
            assert torch.isfinite(img).all() and img.min() >= -1 and img.max() <= 1
        except UserError as e:
            assert str(e).strip() and "Traceback" not in str(e)  # a message a user can read, not a dump
        try:
            images = load_images(root / "c0").images  # dit eval's folder loader
            assert images.dtype == np.uint8 and images.ndim == 4 and images.shape[-1] == 3
        except UserError:
            pass


@st.composite
def npz_arrays(draw):
    dtype = draw(st.sampled_from([np.uint8, np.int64, np.float32, np.bool_, np.uint16, np.float64, np.int8]))
    shape = draw(st.lists(st.integers(0, 4), max_size=5))
    arrays = {"arr_0": np.zeros(shape, dtype)}
    if draw(st.booleans()):
        arrays["arr_1"] = np.zeros(
            draw(st.lists(st.integers(0, 4), max_size=2)), draw(st.sampled_from([np.int64, np.float32, np.uint8]))
        )
    if draw(st.booleans()):
        arrays = {draw(st.sampled_from(["images", "x", "arr_0"])): arrays["arr_0"]}
    return arrays


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(arrays=npz_arrays())
def test_npz_loader_on_random_arrays(arrays):
    from dit.evaluation.io import load_images

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "a.npz"
        np.savez(p, **arrays)
        try:
            s = load_images(p)
        except UserError:
            return
        assert s.images.dtype == np.uint8 and s.images.ndim == 4 and s.images.shape[-1] == 3 and len(s.images) > 0
        assert s.labels is None or s.labels.shape == (len(s.images),)


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=damaged(".npz"))
def test_npz_loader_on_damaged_files(data):
    """Both readers of dit eval: the in-memory one and the streaming one (consumed to the end)."""
    from dit.evaluation.io import image_batches, load_images

    with tempfile.TemporaryDirectory() as d:
        p = _write(Path(d), "a.npz", data)
        try:
            s = load_images(p)
            assert s.images.dtype == np.uint8 and s.images.ndim == 4
        except UserError:
            pass
        try:
            n, batches, _ = image_batches(p, 1)
            got = sum(len(b) for b in batches)
            assert got == n
        except UserError:
            pass


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.one_of(damaged(".pt"), damaged(".safetensors")), ext=st.sampled_from([".pt", ".safetensors", ".bin"]))
def test_checkpoint_loaders_on_damaged_files(data, ext):
    from dit.weights.formats import read_weights
    from dit.runtime.checkpoint import load_checkpoint

    with tempfile.TemporaryDirectory() as d:
        p = _write(Path(d), "c" + ext, data)
        for load in (load_checkpoint, read_weights):
            try:
                load(p)
            except UserError:
                pass
