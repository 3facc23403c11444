"""Per-sample gradients G against answers known by other means: batch-1 backward passes and torch.func."""

from __future__ import annotations

import copy
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from core.errors import Cancelled, StudioError
from core.fisher import (
    _MODULE_LAYOUTS,
    SHIFT_MIN_POSITIONS,
    check_memory,
    conv_weight_rows,
    fisher_diagonal,
    fisher_factor,
    per_sample_gradients,
    streamed_fisher_diagonal,
    supports_closed_form,
)
from core.progress import CancelToken

# --------------------------------------------------------------------------- models and references


class _CNN(nn.Module):
    """Conv (k3, stride 2, pad 1) + BN + ReLU, 1x1 conv + ReLU, dilated conv, BN, Linear."""

    def __init__(self, bias: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 5, 3, stride=2, padding=1, dilation=1, bias=bias)
        self.bn1 = nn.BatchNorm2d(5)
        self.conv2 = nn.Conv2d(5, 4, 1, bias=bias)
        self.conv3 = nn.Conv2d(4, 6, 3, padding=2, dilation=2, bias=bias)
        self.bn3 = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6 * 4 * 4, 7, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.conv2(x))
        x = torch.tanh(self.bn3(self.conv3(x)))
        return self.fc(torch.flatten(x, 1))


def _mlp(bias: bool) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 9, bias=bias), nn.Tanh(),
                         nn.Linear(9, 6, bias=bias), nn.ReLU(), nn.Linear(6, 4, bias=bias))


def _with_bn_stats(model: nn.Module, seed: int) -> nn.Module:
    """Give every BatchNorm non-trivial affine parameters and running statistics."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1 + 0.3 * torch.randn(m.num_features, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.num_features, generator=g))
                m.running_mean.copy_(0.5 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
    return model


def _data(shape: tuple[int, ...], classes: int, n: int = 11, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g), torch.randint(0, classes, (n,), generator=g)


def _loop_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, names) -> torch.Tensor:
    """Reference G: one batch-1 backward pass per sample on an eval-mode copy."""
    ref = copy.deepcopy(model).eval()
    params = dict(ref.named_parameters())
    rows = []
    for i in range(len(x)):
        ref.zero_grad(set_to_none=True)
        F.cross_entropy(ref(x[i:i + 1]), y[i:i + 1]).backward()
        rows.append(torch.cat([params[nm].grad.reshape(-1) for nm in names]))
    return torch.stack(rows)


def _assert_close(G: torch.Tensor, ref: torch.Tensor, rel: float = 1e-5) -> None:
    scale = float(ref.abs().max())
    assert scale > 0
    err = float((G - ref).abs().max())
    assert err <= rel * scale, f"max error {err:.3g} vs scale {scale:.3g}"


def _weight_names(model: nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if n.endswith("weight") and p.dim() >= 2]


# --------------------------------------------------------------------------- correctness


@pytest.mark.parametrize("bias", [True, False])
def test_mlp_closed_form_equals_func_and_batch1_loop(bias):
    torch.manual_seed(1)
    model = _mlp(bias).eval()
    x, y = _data((3, 4), 4)
    names = _weight_names(model)
    assert supports_closed_form(model, names)
    ref = _loop_gradients(model, x, y, names)
    closed = per_sample_gradients(model, x, y, names, method="closed_form").G
    func = per_sample_gradients(model, x, y, names, method="func").G
    assert closed.shape == func.shape == ref.shape == (11, 12 * 9 + 9 * 6 + 6 * 4)
    _assert_close(closed, ref)
    _assert_close(func, ref)


@pytest.mark.parametrize("bias", [True, False])
def test_cnn_with_batchnorm_closed_form_equals_func_and_batch1_loop(bias):
    """Stride 2 / padding 1 3x3 conv, 1x1 conv, dilated conv, eval-mode BatchNorm, Linear."""
    torch.manual_seed(2)
    model = _with_bn_stats(_CNN(bias), seed=3).eval()
    x, y = _data((3, 8, 8), 7, n=9)
    names = _weight_names(model)
    assert names == ["conv1.weight", "conv2.weight", "conv3.weight", "fc.weight"]
    assert supports_closed_form(model, names)
    ref = _loop_gradients(model, x, y, names)
    gm = per_sample_gradients(model, x, y, names, method="closed_form", chunk=4)
    func = per_sample_gradients(model, x, y, names, method="func", chunk=4).G
    _assert_close(gm.G, ref)
    _assert_close(func, ref)
    with torch.no_grad():
        assert gm.loss == pytest.approx(float(F.cross_entropy(model(x), y)), rel=1e-5)


@pytest.mark.parametrize("kernel,stride,padding,dilation,size,per_offset", [
    ((3, 3), 1, 1, 1, 20, True),   # 400 output positions: one product per kernel offset
    ((3, 3), 1, 1, 1, 8, False),   # 64 positions: one product over the strided patch view
    ((3, 2), 2, (1, 0), 1, 40, True),
    ((3, 3), 1, 2, 2, 18, True),
    ((3, 3), 1, (1, 2), (1, 2), (19, 23), True),  # flattened grid: W_p ≠ H_p, dilated columns
    ((3, 2), 1, (0, 1), 1, (21, 17), True),
    ((1, 1), 2, 0, 1, 40, False),
])
@pytest.mark.parametrize("channels_last", [False, True])
def test_conv_weight_rows_equal_im2col_and_autograd(kernel, stride, padding, dilation, size,
                                                    per_offset, channels_last):
    """Every path of conv_weight_rows (per-offset products on the flattened padded grid at stride
    1, on strided views otherwise, one product over the patch view for small maps) equals im2col
    and autograd, for inputs in either memory format (ResNet20's activations are channels-last)."""
    torch.manual_seed(6)
    conv = nn.Conv2d(3, 5, kernel, stride=stride, padding=padding, dilation=dilation, bias=False)
    h, w = size if isinstance(size, tuple) else (size, size)
    a = torch.randn(4, 3, h, w)
    if channels_last:
        a = a.contiguous(memory_format=torch.channels_last)
    out = conv(a)
    g = torch.randn_like(out)
    positions = out.shape[2] * out.shape[3]
    rows = conv_weight_rows(a, g, conv)
    cols = F.unfold(a, conv.kernel_size, dilation=conv.dilation, padding=conv.padding,
                    stride=conv.stride)
    ref = torch.bmm(g.reshape(4, 5, -1), cols.transpose(1, 2))
    assert rows.shape == (4, 5, 3 * kernel[0] * kernel[1])
    torch.testing.assert_close(rows, ref, rtol=1e-4, atol=1e-4)
    for b in range(4):  # and each row is the autograd gradient of sample b alone
        conv.weight.grad = None
        (conv(a[b:b + 1]) * g[b:b + 1]).sum().backward()
        torch.testing.assert_close(rows[b].reshape(conv.weight.shape), conv.weight.grad,
                                   rtol=1e-4, atol=1e-4)
    assert (positions >= SHIFT_MIN_POSITIONS and kernel != (1, 1)) == per_offset  # both paths run


@pytest.mark.parametrize("cin,cout,groups,kernel,stride,padding,dilation,size", [
    (8, 8, 8, 3, 1, 1, 1, 20),        # depthwise (MobileNet, EfficientNet)
    (8, 16, 8, 3, 2, 1, 1, 15),       # depthwise with a channel multiplier, stride 2
    (6, 6, 6, 7, 1, 3, 1, 9),         # ConvNeXt's 7×7 depthwise
    (8, 12, 4, 3, 1, 1, 1, 20),       # grouped (ResNeXt, RegNet)
    (6, 6, 3, (3, 2), 2, (1, 0), (1, 2), 17),
])
@pytest.mark.parametrize("channels_last", [False, True])
def test_grouped_conv_weight_rows_equal_autograd(cin, cout, groups, kernel, stride, padding,
                                                 dilation, size, channels_last):
    """Grouped and depthwise convolutions take the closed form (they used to fall to torch.func
    for the whole network): each sample's rows equal its autograd weight gradient, for inputs
    and output gradients in either memory format."""
    torch.manual_seed(7)
    conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, dilation=dilation,
                     groups=groups, bias=False)
    a = torch.randn(3, cin, size, size)
    g = torch.randn_like(conv(a))
    if channels_last:
        a = a.contiguous(memory_format=torch.channels_last)
        g = g.contiguous(memory_format=torch.channels_last)
    rows = conv_weight_rows(a, g, conv)
    assert rows.shape == (3, cout, conv.weight[0].numel())
    for b in range(3):
        conv.weight.grad = None
        (conv(a[b:b + 1]) * g[b:b + 1]).sum().backward()
        torch.testing.assert_close(rows[b].reshape(conv.weight.shape), conv.weight.grad,
                                   rtol=1e-4, atol=1e-4)


def test_auto_on_grouped_conv_uses_closed_form_and_is_exact():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1, groups=4), nn.ReLU(),
                          nn.Conv2d(8, 4, 1, groups=2), nn.Flatten(),
                          nn.Linear(4 * 5 * 5, 3)).eval()
    x, y = _data((4, 5, 5), 3, n=6)
    names = ["0.weight", "2.weight", "4.weight"]
    assert supports_closed_form(model, names)
    ref = _loop_gradients(model, x, y, names)
    _assert_close(per_sample_gradients(model, x, y, names).G, ref)
    _assert_close(per_sample_gradients(model, x, y, names, method="func").G, ref)


def test_torchscript_model_takes_the_per_image_loop_and_is_exact():
    """A TorchScript module takes neither hooks per layer type nor torch.func's functional
    calls (it used to fail with "The stateless API can't be used with Jitted modules"): its
    rows come from one backward pass per image, equal to the plain module's, flags restored."""
    torch.manual_seed(5)
    model = _with_bn_stats(_CNN(), seed=2).eval()
    scripted = torch.jit.script(copy.deepcopy(model))
    x, y = _data((3, 8, 8), 7, n=9)
    names = _weight_names(model)
    seen = []
    gm = per_sample_gradients(scripted, x, y, names, chunk=4, progress=lambda ev: seen.append(ev.done))
    _assert_close(gm.G, per_sample_gradients(model, x, y, names).G)
    assert seen == [4, 8, 9]
    assert gm.loss == pytest.approx(float(F.cross_entropy(model(x), y).detach()), rel=1e-5)
    assert all(p.requires_grad for p in scripted.parameters())
    assert not any(p.grad is not None for p in scripted.parameters())  # nothing accumulated


def test_linear_on_sequences_sums_over_positions():
    """A Linear applied to (B, T, d) inputs: the per-sample gradient sums over the T positions."""
    torch.manual_seed(5)

    class SeqNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(5, 6)
            self.head = nn.Linear(6, 3)

        def forward(self, x):
            return self.head(torch.tanh(self.proj(x)).mean(1))

    model = SeqNet().eval()
    x, y = _data((4, 5), 3, n=7)
    names = ["proj.weight", "head.weight"]
    ref = _loop_gradients(model, x, y, names)
    _assert_close(per_sample_gradients(model, x, y, names, method="closed_form").G, ref)


def test_auto_is_exact_for_reflect_padded_conv():
    """padding_mode='reflect' pads by reflection, not zeros: G must still be the true gradient."""
    torch.manual_seed(6)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect"), nn.ReLU(),
                          nn.Flatten(), nn.Linear(3 * 5 * 5, 4)).eval()
    x, y = _data((2, 5, 5), 4, n=6)
    names = ["0.weight", "3.weight"]
    assert not supports_closed_form(model, names)  # torch.func: the outer-product form pads zeros
    _assert_close(per_sample_gradients(model, x, y, names).G, _loop_gradients(model, x, y, names))


def test_auto_is_exact_when_a_layer_is_called_twice():
    """A Linear reused in forward (shared weights): its gradient sums both uses."""
    torch.manual_seed(7)

    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 3)

        def forward(self, x):
            return self.b(torch.tanh(self.a(torch.tanh(self.a(x)))))

    model = Shared().eval()
    x, y = _data((4,), 3, n=6)
    names = ["a.weight", "b.weight"]
    _assert_close(per_sample_gradients(model, x, y, names).G, _loop_gradients(model, x, y, names))


def test_auto_handles_linear_whose_forward_is_not_called():
    """MultiheadAttention uses out_proj.weight without calling out_proj: no KeyError, exact G."""
    from small_nets import AttentionNet

    torch.manual_seed(8)
    model = AttentionNet().eval()
    x, y = _data((5, 8), 3, n=4)
    names = ["attn.out_proj.weight", "head.weight"]
    _assert_close(per_sample_gradients(model, x, y, names).G, _loop_gradients(model, x, y, names))


def test_a_linear_that_sees_tokens_first_gets_each_images_rows():
    """A Linear on (tokens, images, features), as in nn.Transformer without batch_first, with as
    many tokens as images: the sizes alone cannot tell them apart, and the outer product over
    dimension 0 would pair tokens with images. The module's layouts find the images on dimension
    1, and the closed form equals one backward pass per image."""

    class TokensFirst(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mix = nn.Linear(4, 6)
            self.head = nn.Linear(6, 3)

        def forward(self, x):  # x: (images, tokens, 4)
            return self.head(torch.relu(self.mix(x.transpose(0, 1))).mean(0))

    torch.manual_seed(10)
    model = TokensFirst().eval()
    x, y = _data((6, 4), 3, n=6)  # 6 images of 6 tokens
    names = ["mix.weight", "head.weight"]
    assert supports_closed_form(model, names)
    got = per_sample_gradients(model, x, y, names).G
    _assert_close(got, _loop_gradients(model, x, y, names))
    (layouts,) = _MODULE_LAYOUTS[model].values()
    assert layouts == {"mix": ("dim", 1), "head": ("major",)}


@pytest.mark.parametrize("method", ["closed_form", "func"])
def test_rows_per_sample_two_averages_consecutive_pairs(method):
    torch.manual_seed(9)
    model = _mlp(True).eval()
    x, y = _data((3, 4), 4, n=9)  # odd: the last sample is dropped
    names = _weight_names(model)
    single = per_sample_gradients(model, x, y, names, method=method).G
    gm = per_sample_gradients(model, x, y, names, method=method, rows_per_sample=2, chunk=3)
    assert gm.G.shape == (4, single.shape[1])
    _assert_close(gm.G, single[:8].view(4, 2, -1).mean(1))
    with torch.no_grad():
        assert gm.loss == pytest.approx(float(F.cross_entropy(model(x[:8]), y[:8])), rel=1e-5)


def test_chunking_does_not_change_rows():
    torch.manual_seed(10)
    model = _with_bn_stats(_CNN(), seed=1).eval()
    x, y = _data((3, 8, 8), 7, n=10)
    names = _weight_names(model)
    whole = per_sample_gradients(model, x, y, names, chunk=128).G
    pieces = per_sample_gradients(model, x, y, names, chunk=3).G
    _assert_close(pieces, whole, rel=1e-6)


def test_large_networks_take_chunks_their_memory_allows(monkeypatch):
    """A chunk holds at most CHUNK_BYTES of per-sample gradients of the named weights (here two
    images' worth), so on a large network the chunk's copy stays small beside G; rows unchanged."""
    import core.fisher as fisher

    torch.manual_seed(10)
    model = _with_bn_stats(_CNN(), seed=1).eval()
    x, y = _data((3, 8, 8), 7, n=10)
    names = _weight_names(model)
    whole = per_sample_gradients(model, x, y, names).G
    full = sum(dict(model.named_parameters())[nm].numel() for nm in names)
    monkeypatch.setattr(fisher, "CHUNK_BYTES", 2 * 4 * full)
    seen = []
    per_sample_gradients(model, x, y, names, progress=lambda ev: seen.append(ev.done))
    assert seen == [2, 4, 6, 8, 10]
    _assert_close(per_sample_gradients(model, x, y, names).G, whole, rel=1e-6)


# --------------------------------------------------------------------------- column layout


def test_column_layout_follows_names_order_and_shapes():
    torch.manual_seed(11)
    model = _with_bn_stats(_CNN(), seed=2).eval()
    x, y = _data((3, 8, 8), 7, n=5)
    names = ["fc.weight", "conv2.weight", "conv1.weight"]  # not the model's order
    gm = per_sample_gradients(model, x, y, names)
    params = dict(model.named_parameters())
    assert gm.names == tuple(names)
    assert gm.shapes == tuple(tuple(params[n].shape) for n in names)
    sizes = [params[n].numel() for n in names]
    assert gm.offsets == (0, sizes[0], sizes[0] + sizes[1])
    assert [(s.start, s.stop) for s in gm.slices] == [
        (0, sizes[0]), (sizes[0], sizes[0] + sizes[1]), (sizes[0] + sizes[1], sum(sizes))]
    assert gm.G.shape == (5, sum(sizes)) and gm.G.dtype == torch.float32
    # each slice, reshaped, is that parameter's per-sample gradient
    ref = copy.deepcopy(model).eval()
    ref_params = dict(ref.named_parameters())
    for i in range(len(x)):
        ref.zero_grad(set_to_none=True)
        F.cross_entropy(ref(x[i:i + 1]), y[i:i + 1]).backward()
        for name, sl, shape in zip(names, gm.slices, gm.shapes):
            grad = ref_params[name].grad
            got = gm.G[i, sl].view(shape)
            assert torch.allclose(got, grad, atol=1e-5 * float(grad.abs().max()) + 1e-12), name


def test_unknown_parameter_name_is_a_studio_error():
    model = _mlp(True).eval()
    x, y = _data((3, 4), 4, n=3)
    with pytest.raises(StudioError) as err:
        per_sample_gradients(model, x, y, ["1.weight", "nope.weight"])
    assert err.value.field == "layers" and "nope.weight" in str(err.value)


# --------------------------------------------------------------------------- the model is not modified


def _snapshot(model: nn.Module):
    return ({k: v.detach().clone() for k, v in model.state_dict().items()},
            {n: p.requires_grad for n, p in model.named_parameters()},
            {n: m.training for n, m in model.named_modules()})


@pytest.mark.parametrize("method", ["closed_form", "func"])
@pytest.mark.parametrize("training", [True, False])
def test_model_parameters_flags_and_mode_unchanged(method, training):
    """Also in train mode: BatchNorm must not update its running statistics (rows use eval mode)."""
    torch.manual_seed(12)
    model = _with_bn_stats(_CNN(), seed=4)
    model.train(training)
    model.conv2.bias.requires_grad_(False)
    model.fc.weight.requires_grad_(False)  # a frozen weight can still be asked for
    state, req, modes = _snapshot(model)
    x, y = _data((3, 8, 8), 7, n=6)
    per_sample_gradients(model, x, y, ["conv1.weight", "fc.weight"], method=method, chunk=4)
    after_state, after_req, after_modes = _snapshot(model)
    assert after_state.keys() == state.keys()
    for k in state:
        assert torch.equal(after_state[k], state[k]), k
    assert after_req == req
    assert after_modes == modes and model.training is training
    assert all(p.grad is None for p in model.parameters())


def test_per_module_training_flags_restored():
    """A model in train mode with frozen (eval-mode) BatchNorm keeps that mix after the call."""
    torch.manual_seed(13)
    model = _with_bn_stats(_CNN(), seed=5).train()
    model.bn1.eval()
    model.bn3.eval()
    _, _, modes = _snapshot(model)
    x, y = _data((3, 8, 8), 7, n=4)
    per_sample_gradients(model, x, y, ["conv1.weight"])
    assert {n: m.training for n, m in model.named_modules()} == modes


# --------------------------------------------------------------------------- memory, cancel, diagonal


def test_check_memory_names_a_sample_count_that_fits():
    p, factor = 10_000, 1.5
    budget = int(137 * p * 4 * factor) + 100  # 137 rows fit, 138 do not
    check_memory(137, p, budget_bytes=budget)
    with pytest.raises(StudioError) as err:
        check_memory(5000, p, budget_bytes=budget)
    assert err.value.field == "samples"
    fits = [int(v) for v in re.findall(r"at most (\d+) samples", str(err.value))]
    assert fits == [137]
    check_memory(fits[0], p, budget_bytes=budget)  # the suggestion really fits
    with pytest.raises(StudioError):
        check_memory(fits[0] + 1, p, budget_bytes=budget)


def test_already_cancelled_token_raises_and_restores_mode():
    model = _with_bn_stats(_CNN(), seed=6).train()
    x, y = _data((3, 8, 8), 7, n=4)
    token = CancelToken()
    token.cancel()
    for method in ("closed_form", "func"):
        with pytest.raises(Cancelled):
            per_sample_gradients(model, x, y, ["conv1.weight"], method=method, cancel=token)
        assert model.training


def test_cancel_between_chunks():
    model = _mlp(True).eval()
    x, y = _data((3, 4), 4, n=12)
    token = CancelToken()
    reports = []

    def progress(p):
        reports.append(p)
        token.cancel()

    with pytest.raises(Cancelled):
        per_sample_gradients(model, x, y, _weight_names(model), chunk=4, progress=progress,
                             cancel=token)
    assert len(reports) == 1 and reports[0].stage == "gradients" and reports[0].done == 4


def test_fisher_diagonal_is_mean_of_squares():
    g = torch.Generator().manual_seed(14)
    G = torch.randn(13, 50, generator=g) * torch.linspace(0.1, 3.0, 50)
    expected = (G ** 2).mean(0)
    assert torch.allclose(fisher_diagonal(G), expected, rtol=1e-6, atol=0)
    assert torch.allclose(fisher_diagonal(G, block=7), expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize("method", ["closed_form", "func"])
@pytest.mark.parametrize("rows_per_sample", [1, 3])
def test_columns_keep_only_the_selected_weights_in_order(method, rows_per_sample):
    """G restricted to a column mask equals the full G's columns, with compact slices."""
    torch.manual_seed(4)
    model = _with_bn_stats(_CNN(True), seed=5).eval()
    x, y = _data((3, 8, 8), 7, n=9)
    names = _weight_names(model)
    full = per_sample_gradients(model, x, y, names, method=method, chunk=4,
                                rows_per_sample=rows_per_sample)
    keep = torch.rand(full.G.shape[1], generator=torch.Generator().manual_seed(0)) < 0.3
    keep[full.slices[1]] = False  # a layer with no kept weight at all
    part = per_sample_gradients(model, x, y, names, method=method, chunk=4,
                                rows_per_sample=rows_per_sample, columns=keep)
    assert part.G.shape == (full.G.shape[0], int(keep.sum()))
    assert torch.equal(part.G, full.G[:, keep])
    for sl_full, sl_part in zip(full.slices, part.slices):
        assert torch.equal(part.G[:, sl_part], full.G[:, sl_full][:, keep[sl_full]])
    with pytest.raises(ValueError, match="columns"):
        per_sample_gradients(model, x, y, names, columns=keep[:-1])


# --------------------------------------------------------------------------- Fisher factor


def test_fisher_factor_with_one_image_per_row_is_g_over_root_n():
    torch.manual_seed(11)
    model = _mlp(True).eval()
    x, y = _data((3, 4), 4, n=10)
    names = _weight_names(model)
    G = per_sample_gradients(model, x, y, names).G
    ff = fisher_factor(model, x, y, names)
    assert torch.equal(ff.A, G / 10 ** 0.5)
    assert torch.equal(ff.c, torch.full((10,), 10 ** -0.5, dtype=torch.float64))
    assert ff.images == 10


@pytest.mark.parametrize("columns", [False, True])
def test_fisher_factor_of_minibatch_rows_is_centred_rows_plus_the_mean(columns):
    """B images per row: AᵀA = (B/n)Σ(ḡ_j − μ̂)(ḡ_j − μ̂)ᵀ + μ̂μ̂ᵀ and Aᵀc = μ̂, the mean
    per-sample gradient over all n·B images (a column mask keeps those columns of both)."""
    torch.manual_seed(12)
    model = _with_bn_stats(_CNN(True), seed=3).eval()
    x, y = _data((3, 8, 8), 7, n=14)  # B = 4: 3 rows, the last 2 images dropped
    names = _weight_names(model)
    single = per_sample_gradients(model, x, y, names).G.double()
    keep = torch.rand(single.shape[1], generator=torch.Generator().manual_seed(1)) < 0.4
    cols = keep if columns else torch.ones(single.shape[1], dtype=torch.bool)
    g = single[:12][:, cols]
    rows = g.view(3, 4, -1).mean(1)
    mu = g.mean(0)
    fisher = 4 / 3 * (rows - mu).T @ (rows - mu) + torch.outer(mu, mu)
    ff = fisher_factor(model, x, y, names, images_per_row=4, columns=keep if columns else None)
    A = ff.A.double()
    assert ff.A.shape == (4, int(cols.sum())) and ff.images == 12
    _assert_close(A.T @ A, fisher, rel=1e-5)
    _assert_close(A.T @ ff.c, mu, rel=1e-5)


def test_minibatch_rows_estimate_the_per_sample_fisher_where_the_mean_gradient_is_large():
    """Far from a minimum (one label for every image), uncentred rows
    scaled by √B would add (B − 1)μμᵀ; the centred factor's trace stays near the per-sample
    Fisher's on the same images."""
    torch.manual_seed(13)
    model = _mlp(False).eval()
    x, _ = _data((3, 4), 4, n=1600, seed=4)
    x += 1.5  # inputs of one sign, one label for all: a large, consistent mean gradient
    y = torch.zeros(len(x), dtype=torch.long)
    names = _weight_names(model)
    G = per_sample_gradients(model, x, y, names).G.double()
    exact = float((G * G).sum()) / len(G)  # tr F from all 1600 per-sample rows
    mu = G.mean(0)
    assert float(mu @ mu) > 0.1 * exact  # the regime this test is about (0.16 here)
    ff = fisher_factor(model, x, y, names, images_per_row=16)
    centred = float(ff.A.double().pow(2).sum())
    rows = G.view(100, 16, -1).mean(1)
    uncentred = 16 * float((rows * rows).sum()) / 100
    assert abs(centred / exact - 1) < 0.15  # 0.93 here; uncentred 3.3
    assert uncentred / exact > 2.0


def test_fisher_factor_refuses_fewer_images_than_one_row():
    model = _mlp(True).eval()
    x, y = _data((3, 4), 4, n=3)
    with pytest.raises(StudioError, match="fewer than") as err:
        fisher_factor(model, x, y, _weight_names(model), images_per_row=4)
    assert err.value.field == "images per row"


@pytest.mark.parametrize("per_row", [1, 4])
def test_fisher_factor_into_a_given_buffer_equals_a_fresh_one(per_row):
    """``out`` (a previous A's memory, filled with other numbers) receives A: the same values
    to the bit as new memory, in that memory."""
    torch.manual_seed(14)
    model = _with_bn_stats(_CNN(True), seed=5).eval()
    x, y = _data((3, 8, 8), 7, n=16)
    names = _weight_names(model)
    fresh = fisher_factor(model, x, y, names, images_per_row=per_row)
    buffer = torch.full_like(fresh.A, float("nan"))
    into = fisher_factor(model, x, y, names, images_per_row=per_row, out=buffer)
    assert into.A.data_ptr() == buffer.data_ptr() and into.A.shape == fresh.A.shape
    assert torch.equal(into.A, fresh.A) and torch.equal(into.c, fresh.c)


def test_a_buffer_of_the_wrong_shape_is_refused():
    model = _mlp(True).eval()
    x, y = _data((3, 4), 4, n=10)
    names = _weight_names(model)
    p = per_sample_gradients(model, x, y, names).G.shape[1]
    for bad in (torch.empty(10, p + 1), torch.empty(9, p), torch.empty(10, p, dtype=torch.float64)):
        with pytest.raises(ValueError, match="out must be float32"):
            per_sample_gradients(model, x, y, names, out=bad)


def test_streamed_fisher_diagonal_equals_the_diagonal_of_g_in_a_few_rows_of_memory():
    """The saliency's diagonal Fisher without holding G: the same numbers as from the whole G,
    also when the memory budget allows only 2 rows at a time (a network too big for n rows)."""
    model = _with_bn_stats(_CNN(), seed=5).eval()
    x, y = _data((3, 8, 8), 7, n=13, seed=5)
    names = _weight_names(model)
    whole = fisher_diagonal(_loop_gradients(model, x, y, names))
    p = whole.numel()
    reports = []
    for budget in (None, 2 * p * 4 * 2):  # default, and room for 2 rows (and their squares)
        got = streamed_fisher_diagonal(model, x, y, names, budget_bytes=budget, progress=reports.append)
        assert torch.allclose(got, whole, rtol=1e-5, atol=1e-12)
    assert reports[-1].done == 13 and len(reports) == 1 + 7  # one block, then blocks of 2 rows
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        streamed_fisher_diagonal(model, x, y, names, cancel=token)



def test_unknown_weight_names_are_refused_by_name():
    """A layer list that names no weight of the model: a StudioError naming it, for G, the
    Fisher factor and the streamed diagonal alike."""
    model = _mlp(True).eval()
    x, y = _data((3, 4), 4)
    names = _weight_names(model) + ["nope.weight"]
    for build in (per_sample_gradients, fisher_factor, streamed_fisher_diagonal):
        with pytest.raises(StudioError, match="unknown parameter names: \\['nope.weight'\\]"):
            build(model, x, y, names)
