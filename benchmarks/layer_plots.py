"""What choosing a large layer costs the window: its weight and importance histograms.

Choosing a row of the layer table redraws the layer's weight histogram (all weights and the
kept ones), its importance histogram (kept and pruned saliencies, log10) and its importance map.
On ResNet-50's largest layers (2.4 million weights) that took up to 0.59 s of the UI thread. Three
things cost more than they needed (changed 2026-12-08):

- the histograms were given their bin edges as an array, which numpy counts by sorting the
  values in blocks; equal bins given by their range take its arithmetic path, with the same
  counts;
- layers over 2,000,000 weights were subsampled without replacement (a draw that sorts the whole
  layer) before counting, and the counts shown were the sample's; now up to 4,000,000 weights are
  counted exactly, and above that a sample drawn with replacement is counted and scaled to the
  layer (the tooltip says so);
- log10 of the saliencies was computed twice, once for the histogram and once for the map.

This script times the previous and the current computations in the same run, on random weights
and saliencies of ResNet-50's layer shapes and of a 25.7-million-weight fully connected layer,
with 70% of the weights kept. "previous" is the earlier code, kept in this file.

    .venv/bin/python benchmarks/layer_plots.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import core  # noqa: E402,F401  (first: the OpenMP wait policy the app runs with)

# isort: split
import numpy as np  # noqa: E402

from gui.plots import BINS, histogram, log_saliency  # noqa: E402

PREVIOUS_LIMIT = 2_000_000


def _previous_subsample(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values).ravel()
    if values.size <= PREVIOUS_LIMIT:
        return values
    rng = np.random.default_rng(0)
    return values[rng.choice(values.size, size=PREVIOUS_LIMIT, replace=False)]


def previous(w: np.ndarray, kept: np.ndarray, sal: np.ndarray, mask: np.ndarray) -> None:
    """The computations of WeightHistogram, ImportanceHistogram and the map before 2026-12-08."""
    values, k = _previous_subsample(w), _previous_subsample(kept)
    edges = np.linspace(float(values.min()), float(values.max()), BINS + 1)
    np.histogram(values, bins=edges)
    np.histogram(k, bins=edges)
    s = np.asarray(sal, dtype=np.float64).ravel()
    positive = s[s > 0]
    floor = float(positive.min()) if positive.size else 1e-30
    logs = np.log10(np.maximum(s, floor))
    edges = np.linspace(float(logs.min()), float(logs.max()), BINS + 1)
    np.histogram(_previous_subsample(logs[mask]), bins=edges)
    np.histogram(_previous_subsample(logs[~mask]), bins=edges)
    s2 = sal.reshape(sal.shape[0], -1)  # the map's own log, as main_window computed it
    positive = s2[s2 > 0]
    floor = float(positive.min()) if positive.size else 1e-30
    np.log10(np.maximum(s2, floor))


def current(w: np.ndarray, kept: np.ndarray, sal: np.ndarray, mask: np.ndarray) -> None:
    """The same with gui.plots' functions as the plots now call them."""
    w, kept = w.ravel(), kept.ravel()
    lo, hi = float(w.min()), float(w.max())
    histogram(w, lo, hi)
    histogram(kept, lo, hi)
    logs = log_saliency(sal.ravel())
    lo, hi = float(logs.min()), float(logs.max())
    histogram(logs[mask], lo, hi)
    histogram(logs[~mask], lo, hi)
    logs.reshape(sal.shape).reshape(sal.shape[0], -1)  # the map takes the same logs


def main() -> int:
    shapes = [("conv1 (64×3×7×7)", (64, 3, 7, 7)), ("layer3 conv2 (256×256×3×3)", (256, 256, 3, 3)),
              ("layer4 conv2 (512×512×3×3)", (512, 512, 3, 3)), ("fully connected 4096×6272", (4096, 6272))]
    rng = np.random.default_rng(0)
    print("| layer | weights | previous ms | current ms | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for label, shape in shapes:
        w = (0.05 * rng.standard_normal(shape)).astype(np.float32)
        sal = (w.astype(np.float64) ** 2 * rng.random(shape)).astype(np.float32)
        sal.ravel()[: w.size // 100] = 0.0  # some weights no gradient touches
        mask = (np.abs(w) > np.quantile(np.abs(w), 0.3)).ravel()
        kept = w.ravel()[mask]
        times = {}
        for name, fn in (("previous", previous), ("current", current)):
            fn(w, kept, sal, mask)  # warm-up
            runs = []
            for _ in range(5):
                t0 = time.perf_counter()
                fn(w, kept, sal, mask)
                runs.append(time.perf_counter() - t0)
            times[name] = 1000 * statistics.median(runs)
        print(f"| {label} | {w.size:,} | {times['previous']:.1f} | {times['current']:.1f} | "
              f"{times['current'] / times['previous']:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
