"""A MeanFlow network is called on t and t − r in [0, 1] (``meanflow.MODEL_TIME_SCALE``), in training and sampling.

At the flow models' t·1000 the jvp target differentiated the fast frequencies of the timestep embedding and
training diverged (docs/sampling.md); this pins the axis at every place the network is called from."""

import torch

from dit.diffusion.meanflow import MODEL_TIME_SCALE, IntervalTimes, MeanFlow, sample


class Spy(torch.nn.Module):
    """A network that notes the times it is called with; a smooth function of them."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.5))
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, z, t, y=None, interval=None, drop_mask=None):
        self.seen.append((t.detach().clone(), interval.detach().clone()))
        return self.w * z * (1 + t.reshape(-1, 1, 1, 1)) - interval.reshape(-1, 1, 1, 1)


def test_the_axis_is_the_unit_interval():
    assert MODEL_TIME_SCALE == 1.0


def test_training_and_sampling_call_the_network_on_t_and_t_minus_r():
    net = Spy()
    coins = torch.rand(64, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    times = IntervalTimes(torch.sigmoid, share=0.5)(coins)  # (64, 2) = [t, r]
    x = torch.randn(64, 1, 2, 2, generator=torch.Generator().manual_seed(1))
    MeanFlow("xstart").training_losses(net, x, times)
    sample(net, torch.randn(3, 1, 2, 2), torch.tensor([1.0, 0.5, 0.0]), prediction="xstart")
    assert net.seen
    for t, interval in net.seen:
        assert bool(((t >= 0) & (t <= 1)).all()) and bool(((interval >= 0) & (interval <= t + 1e-6)).all())
    t_train, h_train = net.seen[-3]  # the training forward with gradient: the batch's own (t, t − r)
    torch.testing.assert_close(t_train, times[:, 0])
    torch.testing.assert_close(h_train, times[:, 0] - times[:, 1])
    assert [float(t[0]) for t, _ in net.seen[-2:]] == [1.0, 0.5]  # the sampler's two jumps from t = 1
