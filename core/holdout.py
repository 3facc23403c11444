"""Comparing candidate weights on held-out images, batch by batch, as far as a decision needs.

The λ walk (:func:`core.grid_walk.walk_grid_by`) only ever asks "is candidate c's mean held-out
loss below candidate b's?". Both are scored on the same images, so the per-image differences
dᵢ = ℓ_c,i − ℓ_b,i are paired, and neighbouring λ move most images' losses the same way:
their spread is far smaller than either loss's. :class:`PairedHoldout` scores a candidate on
the first ``first`` images, then one batch more at a time, and stops as soon as the mean
difference is more than ``z`` standard errors from 0 (a sequential paired z-test). Where it
never is, both are scored on every image, and the challenger c counts as lower only if its mean
is lower by more than ``move_z`` standard errors over all of them (``move_z = 0``: by any amount,
exactly the comparison of the two means a full evaluation gives). ``z = inf`` turns the early
stop off.

A challenger that is not clearly better can still be hopeless: ``futility_z`` stops it early
when, continuing at the trend of the images seen so far, its mean over all N images would end
below the step threshold with probability under Φ(−futility_z) (stochastic curtailment). With
the paired mean d̄ and standard deviation s on the first m images, the full mean is then
distributed about d̄ with standard deviation s·√(N − m)/N, so the comparison stops, answering
"not lower", once

    (−move_z · s/√N − d̄) / (s·√(N − m)/N) < −futility_z.

It only ever answers "not lower" early, which is what all N images would say unless the rest
turn against the trend; ``futility_z = inf`` (the default here) turns it off.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

#: (candidate index, start, stop) → (per-image losses, per-image 0/1 errors) on images [start, stop)
ScoreBatch = Callable[[int, int, int], tuple[torch.Tensor, torch.Tensor]]


class PairedHoldout:
    """Per-image held-out losses of grid candidates, computed lazily in batches.

    ``score(i, start, stop)`` evaluates candidate ``i`` on held-out images ``[start, stop)``;
    it is called at most once per candidate and batch, in order. :meth:`less` answers the walk's
    question with as few batches as the paired test allows; :meth:`loss` and :meth:`error` are
    the means over the images a candidate was scored on, :meth:`images` how many those are.
    ``forget(i)``, when given, is called with the loser of each comparison: the walk never
    compares it again, so whatever the caller keeps to score it (a model copy) can go.
    """

    def __init__(self, score: ScoreBatch, images: int, *, batch: int = 128, first: int = 128,
                 z: float = 3.0, move_z: float = 0.0, futility_z: float = math.inf,
                 forget: Callable[[int], None] | None = None) -> None:
        self._score, self.total, self.batch, self.first, self.z = score, images, batch, first, z
        self.move_z, self.futility_z = move_z, futility_z
        self._forget = forget
        self._loss: dict[int, list[torch.Tensor]] = {}
        self._wrong: dict[int, list[torch.Tensor]] = {}

    def images(self, i: int) -> int:
        """Held-out images candidate ``i`` has been scored on so far (0 if never)."""
        return sum(len(t) for t in self._loss.get(i, []))

    def _upto(self, i: int, m: int) -> torch.Tensor:
        """Candidate ``i``'s per-image losses on the first ``m`` images (scoring what is missing)."""
        losses, wrong = self._loss.setdefault(i, []), self._wrong.setdefault(i, [])
        done = self.images(i)
        while done < m:
            stop = min(self.total, done + self.batch)
            lo, wr = self._score(i, done, stop)
            losses.append(lo.double())
            wrong.append(wr.double())
            done = stop
        return torch.cat(losses)[:m] if losses else torch.zeros(0, dtype=torch.float64)

    def evaluate(self, i: int) -> None:
        """Score candidate ``i`` on every held-out image."""
        self._upto(i, self.total)

    def loss(self, i: int) -> float:
        """Mean loss over the images candidate ``i`` was scored on."""
        return float(torch.cat(self._loss[i]).mean()) if self.images(i) else 0.0

    def error(self, i: int) -> float:
        """Error rate over the images candidate ``i`` was scored on."""
        return float(torch.cat(self._wrong[i]).mean()) if self.images(i) else 0.0

    def _futile(self, mean: float, sd: float, m: int) -> bool:
        """Whether a challenger trending at ``mean`` (sd ``sd``) on the first ``m`` images would
        end below the step threshold over all of them with probability under Φ(−futility_z)."""
        n = self.total
        spread = sd * math.sqrt(n - m) / n
        if not (spread > 0.0) or math.isinf(self.futility_z):  # NaN or 0: nothing to project
            return False
        threshold = -self.move_z * sd / math.sqrt(n) if self.move_z > 0 else 0.0
        return (threshold - mean) / spread < -self.futility_z

    def less(self, c: int, b: int) -> bool:
        """Whether candidate ``c``'s mean held-out loss is below the incumbent ``b``'s: decided
        on the first images when the paired difference is clear (``z``) or the challenger's
        trend is hopeless (``futility_z``); otherwise on all of them, where ``c`` must be lower
        by more than ``move_z`` standard errors."""
        if self.total == 0:
            return False
        m = min(self.total, self.first)
        while True:
            lb = self._upto(b, m)  # the incumbent first: it is usually scored already
            d = self._upto(c, m) - lb
            mean = float(d.mean())
            sd = float(d.std())  # NaN on one image: nothing is clear
            se = sd / math.sqrt(m)
            if abs(mean) > self.z * se:
                lower = mean < 0.0
                break
            if m >= self.total:
                lower = mean < (-self.move_z * se if self.move_z > 0 else 0.0)
                break
            if self._futile(mean, sd, m):
                lower = False
                break
            m = min(self.total, m + self.batch)
        if self._forget is not None:
            self._forget(b if lower else c)
        return lower
