"""Budgets and top-k masks shared by every method (global or per-layer scope)."""

from __future__ import annotations

import torch


def layer_budgets(sizes: list[int], sparsity: float) -> list[int]:
    """Per-layer number of kept weights for a uniform sparsity: round((1 − s)·p_l) each."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    return [max(0, min(sz, int(round((1.0 - sparsity) * sz)))) for sz in sizes]


def global_budget(p: int, sparsity: float) -> int:
    """Number of kept weights over all prunable weights: round((1 − s)·p)."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    return max(0, min(p, int(round((1.0 - sparsity) * p))))


def topk_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the k largest scores (exactly k, ties broken by index order)."""
    mask = torch.zeros(scores.numel(), dtype=torch.bool)
    if k > 0:
        mask[torch.topk(scores.reshape(-1), k, sorted=False).indices] = True
    return mask


def select(scores: torch.Tensor, k: int | list[int], groups: list[slice]) -> torch.Tensor:
    """Keep the top-k scores globally (``k`` int) or per group (``k`` a list, one per slice)."""
    if isinstance(k, int):
        return topk_mask(scores, k)
    mask = torch.zeros(scores.numel(), dtype=torch.bool)
    for sl, kg in zip(groups, k):
        mask[sl] = topk_mask(scores[sl], kg)
    return mask
