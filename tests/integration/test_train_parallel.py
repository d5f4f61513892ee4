"""World-size independence: per-rank draws and batches, DDP/FSDP under torchrun vs one process."""

import pytest
import torch

from dit.config import ModelConfig
from dit.models import build_model
from dit.runtime.distributed import DistInfo
from dit.train import schedule
from dit.train import trainer as tr
from dit.train.parallelize import apply_activation_checkpointing, parallelize, unwrap

from tests.helpers.train import STEP_DRAW_ARGS, assert_states_close, final_state, make_image_folder, train_args
from tests.helpers.torchrun import run_torchrun

pytestmark = pytest.mark.usefixtures("one_thread")


def test_rank_shares_of_batches_and_draws_concatenate_to_the_single_process_ones():
    perm = schedule.epoch_permutation(seed=3, epoch=1, n=22)
    assert sorted(perm.tolist()) == list(range(22))
    assert not torch.equal(perm, schedule.epoch_permutation(seed=3, epoch=2, n=22))
    one = list(schedule.local_batches(perm, 4, rank=0, world=1, start=2))
    two = list(zip(*(schedule.local_batches(perm, 4, rank=r, world=2, start=2) for r in range(2))))
    assert len(one) == 22 // 4 - 2
    assert one == [a + b for a, b in two]
    kw = STEP_DRAW_ARGS
    full = schedule.draw_step_randomness(rank=0, world=1, **kw)
    halves = [schedule.draw_step_randomness(rank=r, world=2, **kw) for r in range(2)]
    for name in ("noise", "t", "drop_mask", "flip_mask"):
        assert torch.equal(getattr(full, name), torch.cat([getattr(h, name) for h in halves]))
    assert full.t.min() >= 0 and full.t.max() <= 999
    post_full = torch.stack([torch.randn(2, generator=g) for g in full.posterior_gens])
    post_halves = torch.stack([torch.randn(2, generator=g) for h in halves for g in h.posterior_gens])
    assert torch.equal(post_full, post_halves)


def test_batch_not_divisible_by_world_size_is_a_user_error(tmp_path):
    from dit.config import TrainConfig
    from dit.errors import UserError

    cfg = TrainConfig(global_batch_size=10, max_steps=1, results_dir=str(tmp_path))
    with pytest.raises(UserError, match="not divisible"):
        tr.Trainer._check_config(cfg, DistInfo(rank=0, world_size=3))


def _tiny_model():
    torch.manual_seed(0)
    cfg = ModelConfig(
        name=None, input_size=8, in_channels=3, num_classes=3, patch_size=2, hidden_size=32, depth=2, num_heads=2
    )
    model = build_model(cfg)
    with torch.no_grad():  # leave the zero init so every parameter gets a gradient
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def test_activation_checkpointing_keeps_keys_and_gradients():
    plain, ckpt = _tiny_model(), _tiny_model()
    keys = list(ckpt.state_dict())
    wrapped = parallelize(ckpt, DistInfo(), grad_checkpointing=True)
    assert unwrap(wrapped) is ckpt and list(ckpt.state_dict()) == keys
    apply_activation_checkpointing(ckpt.blocks)  # idempotent
    x, t, y = torch.randn(2, 3, 8, 8), torch.tensor([3, 700]), torch.tensor([0, 2])
    for m in (plain, ckpt):
        m(x, t, y, drop_mask=torch.tensor([False, True])).square().mean().backward()
    for (k, a), (_, b) in zip(plain.named_parameters(), ckpt.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7, msg=k)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_processes_give_the_weights_of_one(tmp_path, mode):
    """Same global batch and seed: 2 gloo ranks == 1 process up to the order of the gradient sum."""
    from dit.cli.main import main

    data = make_image_folder(tmp_path / "data")
    common = ["--max-steps", "6", "--ckpt-every", "3", "--log-every", "3", "--device", "cpu", "--ema-warmup"]
    assert main(train_args(data, tmp_path / "one", *common)) == 0
    extra = ["--fsdp"] if mode == "fsdp" else []
    if mode == "fsdp":  # also exercises resume of gathered FSDP state: 3 steps, stop, resume to 6
        run_torchrun(train_args(data, tmp_path / "two", *common[2:], "--max-steps", "3", *extra))
        run_torchrun(train_args(data, tmp_path / "two", *common, "--resume", "auto", *extra))
    else:
        run_torchrun(train_args(data, tmp_path / "two", *common, *extra))
    a, b = final_state(tmp_path / "one"), final_state(tmp_path / "two")
    assert a["step"] == b["step"] == 6
    assert b["config"]["train"]["fsdp"] is (mode == "fsdp")
    assert_states_close(a, b, atol=1e-6)
