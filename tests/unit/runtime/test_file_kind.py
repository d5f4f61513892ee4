"""``sniff`` names what a file holds and never raises: zipfile meets damaged bytes with many kinds of
error, and the loaders call ``sniff`` while reporting another failure."""

import zipfile

from dit.runtime.file_kind import sniff


def _zip(path, names):
    with zipfile.ZipFile(path, "w") as zf:
        for name in names:
            zf.writestr(name, b"x")
    return path


def test_zip_kinds(tmp_path):
    assert sniff(_zip(tmp_path / "c.pt", ["archive/data.pkl", "archive/data/0"])) == "a torch checkpoint"
    assert sniff(_zip(tmp_path / "a.npz", ["arr_0.npy", "arr_1.npy"])) == "an .npz of numpy arrays"


def test_a_zip_that_zipfile_cannot_read_is_called_damaged(tmp_path):
    raw = bytearray(_zip(tmp_path / "c.pt", ["archive/data.pkl"]).read_bytes())
    central = raw.index(b"PK\x01\x02")
    raw[central + 6] = 64  # "version needed to extract" 6.4: zipfile raises NotImplementedError
    bad = tmp_path / "bad.pt"
    bad.write_bytes(bytes(raw))
    assert sniff(bad) == "a damaged or truncated zip archive"
    name = raw.index(b"archive/data.pkl", central)
    raw[central + 6] = 20
    raw[name] = 0x85  # a name that is not UTF-8 while its flag says UTF-8: UnicodeDecodeError
    raw[central + 9] |= 0x08
    bad.write_bytes(bytes(raw))
    assert sniff(bad) == "a damaged or truncated zip archive"
