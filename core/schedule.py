"""CHITA++'s schedule: how many stages, and the rising sparsity each stage prunes to.

CHITA++ (Benbaki et al., 2023) repeats the single-stage solve over sparsities
s_1 < … < s_T = s, recomputing the per-sample gradients at each stage. The orchestration is in
:mod:`core.pruning`; this module only says where the stages lie.
"""

from __future__ import annotations

import math

AUTO_STAGES = (10, 20)  # CHITA++ stage count when the request gives 0: one per layer, clamped


def auto_stages(layers: int) -> int:
    """CHITA++ stages for a network with ``layers`` prunable tensors: one per layer, 10 to 20.

    A heuristic from measurements, not a theorem: a deeper network leaves the local quadratic
    model sooner as weights are removed, so it needs smaller steps. Measured here (docs/
    benchmarks.md): ResNet20 (20 layers) at 0.9 went from 43.9% with 10 stages to 62–65% with
    20; MLPNet (3 layers) at 0.98 gained nothing from 20 (85.6% → 86.0%) at 1.5× the time.
    """
    lo, hi = AUTO_STAGES
    return min(hi, max(lo, int(layers)))


SCHEDULES = ("log", "cubic")  # CHITA++ schedule shapes (chitapp_schedule)


def chitapp_schedule(sparsity: float, stages: int, shape: str = "log") -> list[float]:
    """Rising sparsities s_1 < … < s_T = s for CHITA++'s T stages.

    ``"log"`` (the default) moves the kept fraction d = 1 − s along a curve in log d:

        log(1 − s_t) = log(1 − s) · (1 − (1 − t/T)²),

    so stage t removes a share of the weights still kept that shrinks steadily with t (its step
    in log d falls linearly): large shares while the network is dense and redundant, small ones
    near the target, where it is fragile (at 0.98 with T = 10: 52%, 49%, …, 11%, 4%).
    ``"cubic"``, the schedule before it, s_t = s·(1 − (1 − t/T)³), is front-loaded in s but not
    in log d: its largest shares come late (44% of the kept weights at 0.98's seventh stage),
    and its last two stages at 0.9 with T = 20 remove 0.8% and 0.1%. Compared on calibration
    images no run uses in docs/benchmarks.md ("CHITA++ schedules").
    """
    if shape not in SCHEDULES:
        raise ValueError(f"unknown CHITA++ schedule {shape!r}")
    T = max(1, stages)
    if shape == "cubic":
        return [sparsity * (1.0 - (1.0 - t / T) ** 3) for t in range(1, T + 1)]
    L = math.log1p(-sparsity)
    out = [-math.expm1(L * (1.0 - (1.0 - t / T) ** 2)) for t in range(1, T + 1)]
    out[-1] = sparsity  # exact at the target, whatever the rounding
    return out
