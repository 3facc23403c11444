"""Choosing one point of an ordered grid (λ) by a walk instead of a full scan."""

from __future__ import annotations

from typing import Callable


def walk_grid(score: Callable[[int], float], size: int, start: int) -> int:
    """The index of the grid point with the lowest ``score``, found by a walk.

    Score ``start`` and both neighbours, then keep stepping the way the score falls until it
    rises or the grid ends. On a grid where the score is unimodal this finds the full scan's
    minimum with 3–5 evaluations instead of ``size``. ``score`` is called at most once per index
    by this function; callers that keep a record (e.g. every held-out loss) memoise there.
    """
    start = min(max(start, 0), size - 1)
    seen: dict[int, float] = {}

    def at(i: int) -> float:
        if i not in seen:
            seen[i] = score(i)
        return seen[i]

    at(start)
    for i in (start - 1, start + 1):
        if 0 <= i < size:
            at(i)
    best = min(seen, key=seen.__getitem__)
    step = best - start
    while step:
        nxt = best + step
        if not 0 <= nxt < size or at(nxt) >= seen[best]:
            break
        best = nxt
    return best
