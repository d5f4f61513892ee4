"""A checkpoint whose saved checksum is verified at load is hashed once: the verified digest is what
the protocol card records (a multi-GB file is not read a second time for the card)."""

from dit.models import DiT
from dit.runtime import checkpoint as ck
from dit.runtime import hashing
from dit.weights.formats import load_model


def test_the_digest_verified_at_load_is_kept_and_the_file_is_hashed_once(tmp_path, monkeypatch):
    net = DiT(input_size=8, patch_size=4, in_channels=4, hidden_size=32, depth=1, num_heads=2, num_classes=3)
    sd = net.state_dict()
    path = ck.save_checkpoint({"model": sd, "ema": sd, "config": {"model": net.config.to_dict()}}, tmp_path / "1.pt")
    expected = hashing.sha256_of(path)
    hashed = []
    monkeypatch.setattr(ck, "sha256_of", lambda p, *a: hashed.append(p) or hashing.sha256_of(p, *a))

    assert load_model(path).sha256 == expected and len(hashed) == 1  # the verification's one pass

    ck.checksum_path(path).unlink()
    assert load_model(path).sha256 is None and len(hashed) == 1  # nothing saved, nothing verified
    assert ck.check_checksum(path) == (None, None)
