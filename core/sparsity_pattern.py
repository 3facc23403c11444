"""N:M semi-structured sparsity: at most N kept weights in every block of M.

A block is M consecutive weights along a layer's input dimension (dim 1 of the weight): the
inputs of a Linear row, or the input channels of a convolution at one kernel position and
one output channel. That is the layout sparse tensor cores run for 2:4
(``torch.sparse.to_sparse_semi_structured`` on a Linear weight; NVIDIA's ASP permutes a conv
weight to (out, kh, kw, in) and takes 2:4 along ``in``, the same blocks). A layer whose dim 1
is not a multiple of M (a first conv on 3 colour channels) has no such blocks and is left
dense, as ASP leaves it; :class:`BlockBudget` names those layers.

The pruning methods take a :class:`BlockBudget` where they take a budget ``k``: every
top-k selection (:func:`core.methods.selection.select`) keeps the N best of each block, and
CHITA's swap search swaps within blocks only (:mod:`core.methods.chita`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Collection, Mapping, Sequence

import torch

from core.errors import StudioError

MAX_M = 32  # the largest block the patterns accept (common ones: 2:4, 1:4, 4:8)


@dataclass(frozen=True)
class Pattern:
    """Keep at most ``n`` of every ``m`` consecutive weights along the input dimension."""

    n: int
    m: int

    @property
    def sparsity(self) -> float:
        """The share of each block's weights the pattern removes, 1 − N/M."""
        return 1.0 - self.n / self.m

    def __str__(self) -> str:
        return f"{self.n}:{self.m}"


def parse_pattern(text: str | None) -> Pattern | None:
    """``"2:4"`` → Pattern(2, 4); ``""``/``None``/``"none"``/``"unstructured"`` → None.

    Raises :class:`StudioError` (field ``pattern``) for anything else, or N:M outside
    1 ≤ N < M ≤ ``MAX_M``."""
    if text is None or str(text).strip().lower() in ("", "none", "unstructured"):
        return None
    found = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", str(text))
    if not found:
        raise StudioError(f"sparsity pattern {text!r} is not of the form N:M", field="pattern",
                          fix="use e.g. 2:4 (keep 2 of every 4 weights), or leave it empty for unstructured.")
    n, m = int(found.group(1)), int(found.group(2))
    if not 1 <= n < m <= MAX_M:
        raise StudioError(f"sparsity pattern {n}:{m} must keep at least 1 and fewer than all of "
                          f"each block, with blocks of at most {MAX_M}", field="pattern",
                          fix="use e.g. 2:4, 1:4 or 4:8.")
    return Pattern(n, m)


def layer_fits(shape: Sequence[int], pattern: Pattern) -> bool:
    """Whether a weight of ``shape`` splits into blocks of M along dim 1."""
    return len(shape) >= 2 and shape[1] % pattern.m == 0 and shape[1] > 0


def layer_blocks(shape: Sequence[int], pattern: Pattern, offset: int = 0) -> torch.Tensor:
    """(B, M) flat indices (row-major, plus ``offset``) of the blocks of a weight of ``shape``.

    Element (o, c, t) of the weight viewed as (out, in, r), r the kernel's size, is at
    o·in·r + c·r + t; block (o, c₀, t) holds c = c₀M … c₀M + M − 1."""
    out, cin = int(shape[0]), int(shape[1])
    r = math.prod(int(s) for s in shape[2:])
    m = pattern.m
    base = (torch.arange(out)[:, None, None] * (cin * r)
            + torch.arange(cin // m)[None, :, None] * (m * r)
            + torch.arange(r)[None, None, :]).reshape(-1, 1)
    return base + torch.arange(m)[None, :] * r + offset


@dataclass(frozen=True)
class BlockBudget:
    """Per-block budgets over a flat vector of weights (the prunable layers concatenated).

    ``blocks`` (B, M) holds each block's flat indices, N of which are kept; ``dense`` the flat
    indices kept whatever (the layers ``dense_layers`` that have no blocks of M)."""

    pattern: Pattern
    blocks: torch.Tensor
    dense: torch.Tensor
    dense_layers: tuple[str, ...] = ()

    @property
    def kept(self) -> int:
        """The number of nonzeros every selection under this budget keeps."""
        return self.blocks.shape[0] * self.pattern.n + self.dense.numel()


def block_budget(names: Sequence[str], shapes: Sequence[Sequence[int]], pattern: Pattern,
                 without: Collection[str] = ()) -> BlockBudget:
    """The :class:`BlockBudget` for layers ``names`` of ``shapes``, flattened in that order;
    the layers named in ``without`` are left dense too (a transposed convolution, whose dim 1
    is not its input dimension)."""
    blocks, dense, dense_layers, off = [], [], [], 0
    for name, shape in zip(names, shapes):
        size = math.prod(int(s) for s in shape)
        if layer_fits(shape, pattern) and name not in without:
            blocks.append(layer_blocks(shape, pattern, off))
        else:
            dense.append(torch.arange(off, off + size))
            dense_layers.append(name)
        off += size
    return BlockBudget(
        pattern,
        torch.cat(blocks) if blocks else torch.empty(0, pattern.m, dtype=torch.long),
        torch.cat(dense) if dense else torch.empty(0, dtype=torch.long),
        tuple(dense_layers))


def partial_budget(budget: BlockBudget, wbar: torch.Tensor, count: int) -> BlockBudget:
    """``budget`` with the pattern on ``count`` of its blocks only, the others kept whole: a
    CHITA++ stage on the way to N:M. The blocks taken are those that lose the least to the
    pattern by magnitude, the sum of their M − N smallest w̄² (blocks a previous stage took hold
    M − N zeros, so they cost nothing and stay taken)."""
    count = max(0, min(int(count), budget.blocks.shape[0]))
    if count == budget.blocks.shape[0]:
        return budget
    w2 = wbar.reshape(-1).double()[budget.blocks] ** 2
    drop = budget.pattern.m - budget.pattern.n
    cost = torch.topk(w2, drop, dim=1, largest=False, sorted=False).values.sum(1)
    order = torch.argsort(cost, stable=True)
    taken, whole = budget.blocks[order[:count]], budget.blocks[order[count:]]
    return BlockBudget(budget.pattern, taken, torch.cat([budget.dense, whole.reshape(-1)]),
                       budget.dense_layers)


def block_mask(scores: torch.Tensor, budget: BlockBudget) -> torch.Tensor:
    """Keep the N largest ``scores`` of every block, and every position of the dense layers."""
    mask = torch.zeros(scores.numel(), dtype=torch.bool)
    mask[budget.dense] = True
    if budget.blocks.numel():
        s = scores.reshape(-1)[budget.blocks]
        top = torch.topk(s, budget.pattern.n, dim=1, sorted=False).indices
        mask[budget.blocks.gather(1, top)] = True
    return mask


def pattern_violations(weight: torch.Tensor, pattern: Pattern) -> int | None:
    """Blocks of ``weight`` with more than N nonzeros (0: the pattern holds), or None when
    the weight has no blocks of M (dim 1 not a multiple of M)."""
    if not layer_fits(weight.shape, pattern):
        return None
    nz = weight.detach().reshape(-1)[layer_blocks(weight.shape, pattern)] != 0
    return int((nz.sum(1) > pattern.n).sum())


def check_pattern(weights: Mapping[str, torch.Tensor], pattern: Pattern) -> dict[str, int | None]:
    """:func:`pattern_violations` per named weight."""
    return {name: pattern_violations(w, pattern) for name, w in weights.items()}


COMMON_PATTERNS: tuple[Pattern, ...] = (Pattern(1, 4), Pattern(2, 4), Pattern(4, 8))
"""The patterns :func:`held_patterns` looks for (the app's Pattern box offers these)."""


def held_patterns(weights: Mapping[str, torch.Tensor]) -> dict[str, list[str]]:
    """Which of ``COMMON_PATTERNS`` every block of ``weights`` keeps (a pruned export opened
    again, a file from elsewhere): pattern → the weights without blocks of M (left out of the
    check). A pattern holds where at least one weight has blocks and none breaks it."""
    held: dict[str, list[str]] = {}
    if all(bool(w.detach().ne(0).all()) for w in weights.values()):
        return held  # no zeros: every block is full, no pattern can hold (a dense model)
    for pattern in COMMON_PATTERNS:
        found = check_pattern(weights, pattern)
        checked = [v for v in found.values() if v is not None]
        if checked and not any(checked):
            held[str(pattern)] = [name for name, v in found.items() if v is None]
    return held
