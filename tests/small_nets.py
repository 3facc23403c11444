"""Small networks several test modules build."""

from __future__ import annotations

import torch
from torch import nn


class AttentionNet(nn.Module):
    """One ``nn.MultiheadAttention`` over (images, tokens, features), its output averaged over
    the tokens, and a linear head: the attention keeps ``in_proj_weight`` as a bare parameter
    and uses ``out_proj.weight`` without calling ``out_proj``."""

    def __init__(self, features: int = 8, heads: int = 2, classes: int = 3) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(features, heads, batch_first=True)
        self.head = nn.Linear(features, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.attn(x, x, x, need_weights=False)[0].mean(1))
