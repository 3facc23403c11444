"""BatchNorm recalibration against statistics computed by hand, and what it must leave alone."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from core.batchnorm import (
    convs_into_batchnorm,
    has_batchnorm,
    recalibrate_batchnorm,
    remove_channel_scale,
)
from core.errors import Cancelled
from core.progress import CancelToken


class _Net(nn.Module):
    """conv → BN2d → ReLU → conv → BN2d → ReLU → flatten → Linear → BN1d → Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4, momentum=0.3)
        self.conv2 = nn.Conv2d(4, 3, 3, stride=2, padding=1)
        self.bn2 = nn.BatchNorm2d(3, eps=1e-3)
        self.fc1 = nn.Linear(3 * 3 * 3, 5)
        self.bn3 = nn.BatchNorm1d(5, momentum=0.05)
        self.fc2 = nn.Linear(5, 4)
        self.register_buffer("scale", torch.tensor(1.5))  # a non-BatchNorm buffer

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc2(self.bn3(self.fc1(torch.flatten(x, 1)))) * self.scale


def _net(seed: int = 0) -> _Net:
    """A net with non-trivial affine parameters and stale running statistics."""
    torch.manual_seed(seed)
    net = _Net()
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for m in (net.bn1, net.bn2, net.bn3):
            c = m.num_features
            m.weight.copy_(1 + 0.3 * torch.randn(c, generator=g))
            m.bias.copy_(0.2 * torch.randn(c, generator=g))
            m.running_mean.copy_(3 + torch.randn(c, generator=g))
            m.running_var.copy_(5 + torch.rand(c, generator=g))
            m.num_batches_tracked.fill_(77)
    return net


def _images(n: int = 24, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.5 + 2.0 * torch.randn(n, 2, 6, 6, generator=g)


def _batch_norm(h, m: nn.modules.batchnorm._BatchNorm, dims):
    """Train-mode BatchNorm by hand: normalise with the biased batch variance; return (out, mean, unbiased var)."""
    mean = h.mean(dims)
    var_b = h.var(dims, unbiased=False)
    var_u = h.var(dims, unbiased=True)
    shape = (1, -1) + (1,) * (h.dim() - 2)
    out = (h - mean.view(shape)) / torch.sqrt(var_b.view(shape) + m.eps)
    return out * m.weight.view(shape) + m.bias.view(shape), mean, var_u


@torch.no_grad()
def _hand_statistics(net: _Net, x: torch.Tensor):
    """Running statistics after one train-mode pass over all of x (one batch), by hand."""
    h1 = net.conv1(x)
    a1, m1, v1 = _batch_norm(h1, net.bn1, (0, 2, 3))
    h2 = net.conv2(torch.relu(a1))
    a2, m2, v2 = _batch_norm(h2, net.bn2, (0, 2, 3))
    h3 = net.fc1(torch.flatten(torch.relu(a2), 1))
    _, m3, v3 = _batch_norm(h3, net.bn3, (0,))
    return {"bn1": (m1, v1), "bn2": (m2, v2), "bn3": (m3, v3)}


def _params(net):
    return {k: v.detach().clone() for k, v in net.named_parameters()}


def _modes(net):
    return {n: m.training for n, m in net.named_modules()}


@pytest.mark.parametrize("training", [False, True])
def test_one_batch_gives_the_batch_statistics_computed_by_hand(training):
    net = _net()
    net.train(training)
    x = _images()
    expected = _hand_statistics(net, x)
    params, modes = _params(net), _modes(net)
    out = recalibrate_batchnorm(net, x, batch_size=len(x) + 5)
    for name, (mean, var) in expected.items():
        bn = getattr(net, name)
        assert torch.allclose(bn.running_mean, mean, rtol=1e-5, atol=1e-6), name
        assert torch.allclose(bn.running_var, var, rtol=1e-5, atol=1e-6), name
        assert int(bn.num_batches_tracked) == 1
        assert torch.equal(out[f"{name}.running_mean"], bn.running_mean)
        assert torch.equal(out[f"{name}.running_var"], bn.running_var)
        assert torch.equal(out[f"{name}.num_batches_tracked"], bn.num_batches_tracked)
    assert set(out) == {f"{b}.{s}" for b in expected
                        for s in ("running_mean", "running_var", "num_batches_tracked")}
    # momentum, modes, parameters and other buffers are as before
    assert (net.bn1.momentum, net.bn2.momentum, net.bn3.momentum) == (0.3, 0.1, 0.05)
    assert _modes(net) == modes and net.training is training
    after = _params(net)
    assert after.keys() == params.keys()
    assert all(torch.equal(after[k], params[k]) for k in params)
    assert float(net.scale) == 1.5


def test_several_batches_average_the_batch_statistics():
    """Cumulative average over equal batches: the mean of batch means and of unbiased batch variances
    (checked on the first BatchNorm, whose input does not depend on the other samples)."""
    net = _net(seed=2).eval()
    x = _images(n=30, seed=3)
    recalibrate_batchnorm(net, x, batch_size=10)
    with torch.no_grad():
        h = net.conv1(x).view(3, 10, 4, 6, 6)
    mean = h.mean((1, 3, 4)).mean(0)
    var = torch.stack([h[b].var((0, 2, 3), unbiased=True) for b in range(3)]).mean(0)
    assert torch.allclose(net.bn1.running_mean, mean, rtol=1e-5, atol=1e-6)
    assert torch.allclose(net.bn1.running_var, var, rtol=1e-5, atol=1e-6)
    assert int(net.bn1.num_batches_tracked) == 3
    assert net.bn1.momentum == 0.3


def test_per_module_training_flags_restored():
    """Train mode with frozen (eval-mode) BatchNorm layers keeps exactly that mix."""
    net = _net(seed=6).train()
    net.bn2.eval()
    net.bn3.eval()
    modes = _modes(net)
    recalibrate_batchnorm(net, _images(), batch_size=8)
    assert _modes(net) == modes


def test_cancel_raises_and_restores_momentum_and_mode():
    net = _net(seed=7).eval()
    token = CancelToken()
    token.cancel()
    params = _params(net)
    with pytest.raises(Cancelled):
        recalibrate_batchnorm(net, _images(), cancel=token)
    assert (net.bn1.momentum, net.bn2.momentum, net.bn3.momentum) == (0.3, 0.1, 0.05)
    assert not any(m.training for m in net.modules())
    assert all(torch.equal(v, params[k]) for k, v in _params(net).items())


def test_progress_reports_each_batch():
    net = _net(seed=8).eval()
    reports = []
    recalibrate_batchnorm(net, _images(n=20), batch_size=8, progress=reports.append)
    assert [(r.stage, r.done, r.total) for r in reports] == [
        ("batchnorm", 8, 20), ("batchnorm", 16, 20), ("batchnorm", 20, 20)]


def test_model_without_tracking_batchnorm_is_left_alone():
    torch.manual_seed(9)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3, track_running_stats=False), nn.ReLU()).eval()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    assert recalibrate_batchnorm(net, _images()) == {}
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
    assert not net.training


@pytest.mark.parametrize("model, expected", [
    (nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)), False),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)), True),
    (nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)), True),
    (nn.Sequential(nn.Conv3d(1, 2, 3), nn.BatchNorm3d(2)), True),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False)), False),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.GroupNorm(1, 2), nn.LayerNorm(2)), False),
    (nn.Sequential(nn.Sequential(nn.Linear(3, 3)), nn.Sequential(nn.Sequential(nn.BatchNorm1d(3)))), True),
])
def test_has_batchnorm(model, expected):
    assert has_batchnorm(model) is expected


def test_has_batchnorm_on_the_demo_models():
    from core.architectures import build_architecture

    assert has_batchnorm(build_architecture("digits_cnn")) is True
    assert has_batchnorm(build_architecture("digits_mlp")) is False


# --------------------------------------------------------------------------- channel scales


class _ReluFirst(nn.Module):
    """conv → ReLU → BN2d (the conv does not feed BatchNorm directly) and conv → BN2d."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 3, 3, padding=1)
        self.bn_a = nn.BatchNorm2d(3)
        self.b = nn.Conv2d(3, 4, 3, padding=1)
        self.bn_b = nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn_b(self.b(self.bn_a(torch.relu(self.a(x))))).mean((2, 3))


def test_convs_into_batchnorm_finds_only_convs_whose_output_batchnorm_reads():
    net = _net()
    net.train()
    assert convs_into_batchnorm(net, _images()) == {"conv1", "conv2"}
    assert all(m.training for m in net.modules())  # modes restored
    assert convs_into_batchnorm(_ReluFirst(), _images()) == {"b"}
    from core.architectures import ResNet20
    found = convs_into_batchnorm(ResNet20(), torch.randn(2, 3, 32, 32))
    convs = {n for n, m in ResNet20().named_modules() if isinstance(m, nn.Conv2d)}
    assert found == convs and len(found) == 21  # conv1, 18 block convs, 2 shortcut convs


def test_recalibration_makes_a_conv_channel_scale_free():
    """The premise of remove_channel_scale: w_c → αw_c, then recalibration, changes nothing (up to
    BatchNorm's ε, which is why the scales here grow: shrinking a channel makes ε count)."""
    x = _images(64)
    net = _net()
    recalibrate_batchnorm(net, x)
    scaled = _net()
    with torch.no_grad():
        scaled.conv1.weight[1] *= 3.0
        scaled.conv1.bias[1] *= 3.0  # the bias too: the whole channel output scales
        scaled.conv2.weight[0] *= 2.0
        scaled.conv2.bias[0] *= 2.0
    recalibrate_batchnorm(scaled, x)
    net.eval()
    scaled.eval()
    with torch.no_grad():
        same = float((net(x) - scaled(x)).abs().max())
    other = _net()
    with torch.no_grad():
        other.conv1.weight[1, 0] *= 3.0  # not a channel scale: one input's slice of it
    recalibrate_batchnorm(other, x)
    other.eval()
    with torch.no_grad():
        moved = float((net(x) - other(x)).abs().max())
    assert same < 0.01 < 0.1 < moved, (same, moved)  # bn2's ε (1e-3 on a variance of ~0.08) shows


def test_remove_channel_scale_projects_each_channel_block_and_nothing_else():
    net = _net()
    names = ["conv1.weight", "conv2.weight", "fc1.weight"]
    params = dict(net.named_parameters())
    sizes = [params[n].numel() for n in names]
    groups, off = [], 0
    for sz in sizes:
        groups.append(slice(off, off + sz))
        off += sz
    g = torch.Generator().manual_seed(3)
    A = torch.randn(7, off, generator=g)
    before = A.clone()
    channels = remove_channel_scale(A, net, names, groups, _images())
    assert channels == 4 + 3
    for name, sl in zip(names[:2], groups[:2]):
        W = params[name].detach().reshape(params[name].shape[0], -1)
        blocks = A[:, sl].reshape(7, W.shape[0], -1)
        old = before[:, sl].reshape(7, W.shape[0], -1)
        # orthogonal to each channel's weights, and the removed part is along them
        assert torch.allclose(torch.einsum("ncf,cf->nc", blocks, W), torch.zeros(7, W.shape[0]), atol=1e-4)
        removed = old - blocks
        w_hat = W / W.norm(dim=1, keepdim=True)
        coef = torch.einsum("ncf,cf->nc", old, w_hat)
        assert torch.allclose(removed, coef[..., None] * w_hat[None], atol=1e-5)
    assert torch.equal(A[:, groups[2]], before[:, groups[2]])  # the Linear layer: untouched
