"""The λ walk's comparisons: the grid walk and the batch-by-batch paired held-out test."""

from __future__ import annotations

import math
import random

import torch

from core.grid_walk import walk_grid, walk_grid_by
from core.holdout import PairedHoldout


def _scan_walk(score, size: int, start: int) -> int:
    """The walk as a full record of scores: start and both neighbours, then step while falling."""
    start = min(max(start, 0), size - 1)
    seen = {i: score(i) for i in (start, start - 1, start + 1) if 0 <= i < size}
    best = min(seen, key=seen.__getitem__)
    step = best - start
    while step and 0 <= best + step < size and score(best + step) < seen[best]:
        best += step
        seen[best] = score(best)
    return best


def test_walk_by_comparisons_matches_the_walk_on_scores_ties_included():
    rng = random.Random(0)
    for _ in range(3000):
        size = rng.randint(1, 10)
        vals = [rng.choice([0.0, 1.0, 2.0, rng.random()]) for _ in range(size)]
        start = rng.randint(-1, size)
        want = _scan_walk(vals.__getitem__, size, start)
        assert walk_grid(vals.__getitem__, size, start) == want
        assert walk_grid_by(lambda i, j: vals[i] < vals[j], size, start) == want


def test_walk_finds_the_minimum_of_a_unimodal_grid_from_any_start():
    for size in range(1, 11):
        for lowest in range(size):
            vals = [abs(i - lowest) for i in range(size)]
            for start in range(size):
                assert walk_grid(vals.__getitem__, size, start) == lowest


def _held(losses: torch.Tensor, z: float = 3.0):
    """A PairedHoldout over fixed per-image losses (rows: candidates), counting the batches scored."""
    calls: list[tuple[int, int, int]] = []

    def score(i: int, start: int, stop: int):
        calls.append((i, start, stop))
        return losses[i, start:stop], (losses[i, start:stop] > 1.0).float()

    return PairedHoldout(score, losses.shape[1], batch=100, first=100, z=z), calls


def test_a_clear_difference_is_decided_on_the_first_batch():
    g = torch.Generator().manual_seed(0)
    base = torch.rand(500, generator=g, dtype=torch.float64) * 3
    losses = torch.stack([base, base + 0.05 + 0.01 * torch.randn(500, generator=g, dtype=torch.float64)])
    held, calls = _held(losses)
    assert held.less(0, 1) and not held.less(1, 0)
    assert held.images(0) == held.images(1) == 100  # 0.05 ± 0.001: decided on 100 images
    assert sorted(calls) == [(0, 0, 100), (1, 0, 100)]  # each batch scored once


def test_without_a_clear_difference_every_image_decides_as_the_full_means_do():
    g = torch.Generator().manual_seed(1)
    for trial in range(50):
        base = torch.rand(500, generator=g, dtype=torch.float64)
        noise = torch.randn(500, generator=g, dtype=torch.float64) * 0.2
        other = base + noise - noise.mean() + (trial - 25) * 1e-4  # mean difference ≈ 0
        losses = torch.stack([base, other])
        held, _ = _held(losses)
        assert held.less(1, 0) == bool(other.mean() < base.mean())
        assert held.images(0) == held.images(1) == 500
        assert math.isclose(held.loss(1), float(other.mean()), rel_tol=1e-12)


def test_with_move_z_an_unclear_challenger_must_be_lower_by_that_many_standard_errors():
    """move_z only changes the answer where the sequential test never became clear: there the
    challenger (first argument) must be lower by more than move_z standard errors of the paired
    difference over all images; a clear difference is decided as before."""
    g = torch.Generator().manual_seed(4)
    base = torch.rand(500, generator=g, dtype=torch.float64)
    noise = torch.randn(500, generator=g, dtype=torch.float64)
    noise = (noise - noise.mean()) / noise.std()  # exactly mean 0, sd 1
    se = 0.1 / math.sqrt(500)  # the paired difference's standard error below
    for gap_in_se, lower_at_0, lower_at_2 in [(-1.0, True, False), (-2.5, True, True),
                                              (+1.0, False, False), (-10.0, True, True)]:
        other = base + 0.1 * noise + gap_in_se * se
        for move_z, want in ((0.0, lower_at_0), (2.0, lower_at_2)):
            held, _ = _held(torch.stack([base, other]))
            held.move_z = move_z
            assert held.less(1, 0) == want, (gap_in_se, move_z)
    # a clear difference (10 standard errors on all 500, clear on the first 100) is taken at once
    held, calls = _held(torch.stack([base, base + 0.1 * noise - 10 * se]))
    held.move_z = 2.0
    assert held.less(1, 0) and held.images(1) == 100 and len(calls) == 2


def test_futility_stops_a_hopeless_challenger_early_and_never_a_promising_one():
    """futility_z ends a comparison early, answering "not lower", only when the challenger's
    trend makes a step over all images improbable; a challenger trending towards a step is
    scored on every image as without it. The noise is centred in every batch of 100, so each
    prefix of images trends exactly at the gap."""
    g = torch.Generator().manual_seed(5)
    base = torch.rand(500, generator=g, dtype=torch.float64)
    noise = torch.randn(5, 100, generator=g, dtype=torch.float64)
    noise = ((noise - noise.mean(1, keepdim=True)) / noise.std(1, keepdim=True)).reshape(500)
    se = 0.1 / math.sqrt(500)  # the paired difference's standard error over all 500 images
    for gap_in_se, move_z, stops_at, lower in [
            (+1.0, 2.0, 100, False),   # worse: hopeless on the first batch
            (0.0, 2.0, 300, False),    # level, needs −2 SE: hopeless after 300 images
            (-1.0, 2.0, 500, False),   # trending lower: scored to the end (and not enough)
            (-2.5, 2.0, 500, True),    # trending past the margin: scored to the end, steps
            (+1.0, 0.0, 500, False),   # margin 0: 1 SE worse is not yet hopeless
            (+2.0, 0.0, 300, False)]:  # 2 SE worse is, after 300 images
        other = base + 0.1 * noise + gap_in_se * se
        for futility_z, want_images in ((math.inf, 500), (3.0, stops_at)):
            held, _ = _held(torch.stack([base, other]))
            held.move_z, held.futility_z = move_z, futility_z
            assert held.less(1, 0) == lower, (gap_in_se, move_z, futility_z)
            assert held.images(1) == want_images, (gap_in_se, move_z, futility_z)
    # the rule in numbers: on the first m images, stop iff (threshold − mean)/(sd·√(N−m)/N) < −z_f
    held = PairedHoldout(lambda i, a, b: (torch.zeros(b - a), torch.zeros(b - a)), 400,
                         move_z=2.0, futility_z=3.0)
    sd, m = 1.0, 100
    threshold, spread = -2.0 * sd / math.sqrt(400), sd * math.sqrt(300) / 400
    edge = threshold + 3.0 * spread  # the mean at which the rule flips
    assert held._futile(edge + 1e-9, sd, m) and not held._futile(edge - 1e-9, sd, m)
    assert not held._futile(5.0, float("nan"), m) and not held._futile(5.0, 0.0, m)


def test_futility_changes_few_answers_on_noisy_candidates_and_saves_images():
    """Over pairs whose true gap runs from clearly better to clearly worse, with the engine's
    margin of 2 standard errors: the early "not lower" answers must agree with all 500 images
    on nearly every pair, and save images where the challenger is level or worse."""
    g = torch.Generator().manual_seed(6)
    agree = total = saved = 0
    for gap in torch.linspace(-0.01, 0.01, 81).tolist():
        base = torch.rand(500, generator=g, dtype=torch.float64) * 2
        other = base + gap + 0.05 * torch.randn(500, generator=g, dtype=torch.float64)
        d = other - base
        full = bool(d.mean() < -2.0 * d.std() / math.sqrt(500))
        held, _ = _held(torch.stack([base, other]))
        held.move_z, held.futility_z = 2.0, 3.0
        plain, _ = _held(torch.stack([base, other]))
        plain.move_z = 2.0
        agree += held.less(1, 0) == full
        plain.less(1, 0)
        saved += plain.images(1) - held.images(1)
        total += 1
    assert agree >= total - 1
    assert saved >= 100 * total


def test_an_infinite_threshold_scores_every_image():
    losses = torch.stack([torch.zeros(300, dtype=torch.float64), torch.ones(300, dtype=torch.float64)])
    held, _ = _held(losses, z=math.inf)
    assert held.less(0, 1)
    assert held.images(0) == held.images(1) == 300


def test_the_early_decision_agrees_with_the_full_comparison_on_noisy_candidates():
    """Many candidate pairs whose true gap varies from none to large: every early decision
    must be the one all 500 images give (the test's point: fewer images, same answer)."""
    g = torch.Generator().manual_seed(2)
    saved, agree, total = 0, 0, 0
    for gap in torch.linspace(-0.05, 0.05, 41).tolist():
        base = torch.rand(500, generator=g, dtype=torch.float64) * 2
        other = base + gap + 0.05 * torch.randn(500, generator=g, dtype=torch.float64)
        held, _ = _held(torch.stack([base, other]))
        agree += held.less(1, 0) == bool(other.mean() < base.mean())
        saved += 500 - held.images(1)
        total += 1
    assert agree == total
    assert saved >= 200 * total  # most pairs are clear after 100 or 200 images


def test_no_held_out_images_decides_nothing():
    held = PairedHoldout(lambda i, a, b: (torch.zeros(0), torch.zeros(0)), 0)
    assert not held.less(0, 1) and held.images(0) == 0 and held.loss(0) == 0.0


def test_a_walk_forgets_each_loser_and_never_scores_it_again():
    """The engine keeps one model copy per candidate until ``forget``: the walk must never
    come back to a candidate it was told to forget, and never forget the one it returns."""
    g = torch.Generator().manual_seed(3)
    for trial in range(30):
        means = torch.rand(10, generator=g, dtype=torch.float64)
        losses = means[:, None] + 0.3 * torch.rand(10, 400, generator=g, dtype=torch.float64)
        forgotten: set[int] = set()
        late: list[int] = []

        def score(i: int, start: int, stop: int):
            if i in forgotten:
                late.append(i)
            return losses[i, start:stop], torch.zeros(stop - start)

        held = PairedHoldout(score, 400, batch=100, first=100, forget=forgotten.add)
        best = walk_grid_by(held.less, 10, trial % 10)
        assert best not in forgotten and not late
        scored = {i for i in range(10) if held.images(i)}
        assert forgotten == scored - {best}  # every other candidate it looked at lost once
