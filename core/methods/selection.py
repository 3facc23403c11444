"""Budgets and top-k masks shared by every method (global or per-layer scope)."""

from __future__ import annotations

import torch

from core.sparsity_pattern import BlockBudget, block_mask


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


Budget = int | list[int] | BlockBudget  # global, per layer, or N of every M (core.sparsity_pattern)


def select(scores: torch.Tensor, k: Budget, groups: list[slice],
           frozen: torch.Tensor | None = None) -> torch.Tensor:
    """Keep the top-k scores globally (``k`` int), per group (``k`` a list, one per slice) or
    the N best of every block (``k`` a :class:`BlockBudget`); never a ``frozen`` position (the
    model's own zeros, which stay zeros) while the budget leaves other choices."""
    if frozen is not None and bool(frozen.any()):
        frozen = frozen.reshape(-1)
        # a block whose other weights are too few keeps fewer than N (N:M means at most N)
        return select(scores.reshape(-1).masked_fill(frozen, float("-inf")), k, groups) & ~frozen
    if isinstance(k, BlockBudget):
        return block_mask(scores, k)
    if isinstance(k, int):
        return topk_mask(scores, k)
    mask = torch.zeros(scores.numel(), dtype=torch.bool)
    for sl, kg in zip(groups, k):
        mask[sl] = topk_mask(scores[sl], kg)
    return mask


SAMPLED_TOP_MIN = 1 << 20  # entries from which :func:`top_indices` thresholds on a sample first


def top_indices(x: torch.Tensor, c: int, *, among: torch.Tensor | None = None,
                largest: bool = True) -> torch.Tensor:
    """Indices of the ``c`` largest (or smallest) entries of the 1-D ``x`` restricted to the
    bool mask ``among`` (all entries if None), ordered by value as ``torch.topk`` orders them.

    Below ``SAMPLED_TOP_MIN`` entries this is topk over the gathered candidates. Above it, a
    threshold t is read off a strided sample of about 65,000 entries so that about 4c entries
    pass it; every entry at or beyond t is gathered, and topk runs on those alone. Whenever at
    least c pass, the c extreme entries are among them, so the answer is exact (ties may come
    in another order); otherwise it falls back to all candidates. On 28 M entries with c = 256
    that is 0.4× the seconds of topk over the candidates (``benchmarks/pool_selection.py``).
    """
    n = x.numel()
    if n >= SAMPLED_TOP_MIN:
        step = n // 65536
        sample = x[::step] if among is None else x[::step][among[::step]]
        total = n if among is None else int(among.sum())
        if sample.numel() and c < total:
            j = min(sample.numel(), (4 * c * sample.numel()) // total + 1)
            vals = torch.topk(sample, j, largest=largest, sorted=False).values
            keep = x >= vals.min() if largest else x <= vals.max()
            if among is not None:
                keep &= among
            cand = keep.nonzero().squeeze(1)
            if cand.numel() >= c:
                return cand[torch.topk(x[cand], c, largest=largest).indices]
    cand = torch.arange(n) if among is None else among.nonzero().squeeze(1)
    c = min(c, cand.numel())
    return cand[torch.topk(x[cand], c, largest=largest).indices]
