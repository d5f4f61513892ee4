"""sha256_of: files equal hashlib's digest; folders hash names and bytes, optionally by suffix."""

import hashlib

from dit.runtime.hashing import sha256_of


def test_file_digest_equals_hashlib(tmp_path):
    f = tmp_path / "w.bin"
    data = bytes(range(256)) * 40000  # 10 MB: streamed over several 4 MiB chunks
    f.write_bytes(data)
    assert sha256_of(f) == hashlib.sha256(data).hexdigest()


def test_folder_digest_sees_names_bytes_and_filters_suffixes(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "notes.txt").write_bytes(b"y")
    whole, images = sha256_of(tmp_path), sha256_of(tmp_path, suffixes=[".PNG"])
    assert whole != images
    (tmp_path / "notes.txt").write_bytes(b"changed")
    assert sha256_of(tmp_path, suffixes=[".png"]) == images  # non-images ignored
    assert sha256_of(tmp_path) != whole
    (tmp_path / "a.png").rename(tmp_path / "b.png")  # same bytes, other name
    assert sha256_of(tmp_path, suffixes=[".png"]) != images
