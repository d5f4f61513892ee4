"""Latent-space training: a local AutoencoderKL folder on the fly vs its `dit extract-latents` cache.

The cache stores posterior moments of each image and its mirror; the trainer draws the flip and
the posterior sample from the same per-example streams either way, so N steps from the cache must
give the weights of N steps with on-the-fly encoding (up to encoder float noise).
"""

import pytest

from dit.cli.main import main

from tests.helpers.data import save_tiny_vae
from tests.helpers.train import assert_states_close, final_state, make_image_folder, train_args

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def latent_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("latents")
    data = make_image_folder(root / "data", per_class=4, size=18)
    vae = save_tiny_vae(root / "vae")
    cache = root / "cache"
    assert (
        main(
            [
                "extract-latents",
                "--data-path",
                str(data),
                "--vae",
                str(vae),
                "--image-size",
                "16",
                "--out",
                str(cache),
                "--batch-size",
                "5",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    return data, vae, cache


def _latent_args(path, vae, run, *extra):
    argv = train_args(path, run, "--max-steps", "3", "--log-every", "3", *extra)
    argv[argv.index("--image-size") + 1] = "16"
    argv[argv.index("--vae") + 1] = str(vae)
    return argv


def test_cache_and_on_the_fly_encoding_train_the_same_weights(latent_setup, tmp_path):
    data, vae, cache = latent_setup
    assert main(_latent_args(data, vae, tmp_path / "fly")) == 0
    assert main(_latent_args(cache, vae, tmp_path / "cached")) == 0
    a, b = final_state(tmp_path / "fly"), final_state(tmp_path / "cached")
    # the model sees 4-channel 8×8 latents (16 px / downsample 2) and the run records the VAE
    assert a["config"]["model"]["in_channels"] == 4 and a["config"]["model"]["input_size"] == 8
    assert b["config"]["model"] == a["config"]["model"]
    assert a["model"]["x_embedder.proj.weight"].shape[1] == 4
    assert (a["config"]["data"]["kind"], b["config"]["data"]["kind"]) == ("images", "cache")
    assert_states_close(a, b, atol=1e-6)  # measured: bitwise equal on CPU
    # control: the comparison is sensitive to the mirrors the cache stores (no flips → other weights)
    assert main(_latent_args(cache, vae, tmp_path / "noflip", "--no-flip")) == 0
    with pytest.raises(AssertionError):
        assert_states_close(a, final_state(tmp_path / "noflip"), atol=1e-6)


def test_cache_of_another_image_size_is_refused(latent_setup, tmp_path, capsys):
    _, vae, cache = latent_setup
    argv = _latent_args(cache, vae, tmp_path / "run")
    argv[argv.index("--image-size") + 1] = "32"
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: ")
