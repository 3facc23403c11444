"""Training-style augmentation for BatchNorm statistics: random padded crops and mirror flips.

A BatchNorm network trained on augmented images stores running statistics of augmented
images, and its later layers learned to work with them. CIFAR-style training crops each
image at random from a copy padded with black borders and mirrors half of them, so the stored
statistics include those borders. Statistics recomputed on the same images *without* the
augmentation differ from them: on ResNet20 (../shared) a refresh on 2000 unaugmented training
images takes the dense network from 91.02% to 88.18% on the test images, and one on the same
images cropped and flipped to 91.25% (docs/benchmarks.md, "BatchNorm statistics from augmented
images"). :class:`CropFlip` gives :func:`core.batchnorm.recalibrate_batchnorm` that augmentation,
one deterministic draw per batch, without a second copy of the images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

BN_AUGMENTS: tuple[str, ...] = ("auto", "none", "crop_flip")
"""``PruneRequest.bn_augment`` values: choose on held-out loss, images as they are, crop+flip."""


@dataclass(frozen=True)
class CropFlip:
    """Random ``padding``-pixel crops from a copy padded with ``pad_value`` per channel, and a
    horizontal flip of about half the images; ``seed`` and the batch index fix each draw."""

    pad_value: tuple[float, ...]
    padding: int
    seed: int = 0

    @classmethod
    def for_images(cls, x: torch.Tensor, seed: int = 0) -> "CropFlip":
        """The augmentation for normalised images ``x`` (N, C, H, W): borders of each channel's
        darkest value in ``x`` (raw black under the usual normalisations, as torchvision's
        ``RandomCrop(padding=...)`` pads before normalising) and ``padding`` = H/8 (4 on 32×32)."""
        if x.ndim != 4:
            raise ValueError(f"crop-and-flip needs images of shape (N, C, H, W), not {tuple(x.shape)}")
        dark = x.detach().amin(dim=(0, 2, 3)) if len(x) else torch.zeros(x.shape[1])
        return cls(tuple(float(v) for v in dark), max(1, round(x.shape[2] / 8)), seed)

    def __call__(self, batch: torch.Tensor, index: int = 0) -> torch.Tensor:
        """A new tensor: ``batch`` (N, C, H, W) cropped and flipped, the draw fixed by
        (``seed``, ``index``)."""
        n, c, h, w = batch.shape
        p = self.padding
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        padded = batch.new_empty(n, c, h + 2 * p, w + 2 * p)
        padded[:] = torch.tensor(self.pad_value, dtype=batch.dtype).view(1, c, 1, 1)
        padded[:, :, p:p + h, p:p + w] = batch
        top = torch.randint(0, 2 * p + 1, (n,), generator=g)
        left = torch.randint(0, 2 * p + 1, (n,), generator=g)
        flip = torch.rand(n, generator=g) < 0.5
        rows = top[:, None] + torch.arange(h)  # n × h
        cols = torch.arange(w).expand(n, w).clone()
        cols[flip] = cols[flip].flip(1)  # a mirrored crop reads its columns right to left
        cols += left[:, None]
        return padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None],
                      rows[:, None, :, None], cols[:, None, None, :]]
