"""TF32 in sampling follows the same setting as training (official sample_ddp.py: on)."""

import torch

from dit.cli.main import build_parser
from dit.config import SampleConfig, TrainConfig
from dit.runtime.distributed import set_tf32


def test_set_tf32_switches_both_cuda_flags_and_ignores_cpu():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        set_tf32(torch.device("cuda"), False)
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (False, False)
        set_tf32(torch.device("cpu"), True)  # no effect off CUDA
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (False, False)
        set_tf32(torch.device("cuda"), True)
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (True, True)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_sample_flag_and_default_match_training():
    assert SampleConfig().tf32 is TrainConfig().tf32 is True
    base = ["sample", "--ckpt", "c.pt", "--out", "s.npz"]
    assert build_parser().parse_args(base).tf32 is True
    assert build_parser().parse_args(base + ["--no-tf32"]).tf32 is False
