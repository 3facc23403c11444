"""Crop-and-flip augmentation for BatchNorm statistics: what each image becomes, and the batches
recalibrate_batchnorm feeds through it."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from core.augment import CropFlip
from core.batchnorm import recalibrate_batchnorm


def _images(n: int = 40, c: int = 3, h: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, c, h, h, generator=torch.Generator().manual_seed(seed))


def test_pad_value_is_each_channels_darkest_value_and_padding_an_eighth_of_the_side():
    x = _images()
    t = CropFlip.for_images(x, seed=3)
    assert t.pad_value == tuple(float(v) for v in x.amin(dim=(0, 2, 3)))
    assert t.padding == 2 and t.seed == 3
    assert CropFlip.for_images(_images(h=32)).padding == 4
    with pytest.raises(ValueError, match="N, C, H, W"):
        CropFlip.for_images(torch.zeros(4, 784))


def test_every_image_is_a_crop_of_its_padded_copy_some_mirrored():
    x = _images()
    t = CropFlip.for_images(x)
    out = t(x, 0)
    p, h = t.padding, x.shape[2]
    mirrored = plain = 0
    for img, src in zip(out, x):
        padded = torch.tensor(t.pad_value).view(-1, 1, 1).expand(3, h + 2 * p, h + 2 * p).clone()
        padded[:, p:p + h, p:p + h] = src
        crops = [padded[:, a:a + h, b:b + h] for a in range(2 * p + 1) for b in range(2 * p + 1)]
        is_plain = any(torch.equal(img, c) for c in crops)
        is_mirror = any(torch.equal(img, c.flip(-1)) for c in crops)
        assert is_plain or is_mirror
        plain += is_plain and not is_mirror
        mirrored += is_mirror and not is_plain
    assert plain > 5 and mirrored > 5  # about half each of 40
    assert not torch.equal(out, x)


def test_the_draw_is_fixed_by_seed_and_batch_index():
    x = _images()
    t = CropFlip.for_images(x, seed=1)
    assert torch.equal(t(x, 2), t(x, 2))
    assert not torch.equal(t(x, 2), t(x, 3))
    assert not torch.equal(t(x, 2), CropFlip.for_images(x, seed=2)(x, 2))


def test_recalibration_feeds_each_batch_through_the_transform():
    """Statistics with ``transform`` equal statistics on the batches transformed beforehand."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten())
    x = _images(n=50)
    t = CropFlip.for_images(x, seed=5)
    a, b = copy.deepcopy(net), copy.deepcopy(net)
    got = recalibrate_batchnorm(a, x, batch_size=16, transform=t)
    by_hand = torch.cat([t(x[s:s + 16], s // 16) for s in range(0, 50, 16)])
    want = recalibrate_batchnorm(b, by_hand, batch_size=16)
    plain = recalibrate_batchnorm(copy.deepcopy(net), x, batch_size=16)
    for k in want:
        assert torch.allclose(got[k].float(), want[k].float(), atol=1e-6), k
    assert not torch.allclose(got["1.running_mean"], plain["1.running_mean"], atol=1e-4)
