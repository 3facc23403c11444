"""Where a single-stage CHITA run's seconds go on ResNet20, with the λ grid and with the old one.

For each sparsity: wall seconds of `prune` (no recalibration after pruning, n = 1000), split into
per-sample gradients, the BatchNorm refresh check before pruning, the λ walk (held-out passes
over the backsolves) and the mask search. The baseline is the same run with the previous λ grid
(1 … 10⁻⁴ × the mean Fisher diagonal, walk from 10⁻²), measured in the same process.

    python benchmarks/chita_time_split.py [--sparsities 0.5,0.7,0.8,0.9]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared_models import load_shared  # noqa: E402

from core import pruning  # noqa: E402

OLD_GRID = (1.0, 1e-1, 1e-2, 1e-3, 1e-4)


def _run(loaded, bundle, sparsity: float) -> tuple[float, dict, int, float]:
    req = pruning.PruneRequest(method="chita", sparsity=sparsity, recalibrate_bn=False)
    t0 = time.perf_counter()
    res = pruning.prune(loaded.model, bundle.calibration, req, arch="resnet20")
    wall = time.perf_counter() - t0
    passes = sum(v is not None for v in res.info["lambda_selection"][0]["holdout_loss"])
    return wall, dict(res.timings), passes, float(res.info["solver"][-1]["seconds"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sparsities", default="0.5,0.7,0.8,0.9")
    args = ap.parse_args()
    shared = load_shared("resnet20")
    if shared is None:
        return 2
    loaded, bundle = shared
    grid, start = pruning.LAMBDA_GRID, pruning.LAMBDA_START
    print("ResNet20, single-stage CHITA, n = 1000, no recalibration after pruning; seconds\n")
    print("| sparsity | λ grid | total | gradients | BatchNorm check | λ walk (held-out passes) | "
          "mask search | total ÷ old grid's |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for s in (float(v) for v in args.sparsities.split(",")):
        rows = {}
        for label, g in (("1 … 10⁻⁴ (old)", OLD_GRID), ("10³ … 10⁻⁶", grid)):
            pruning.LAMBDA_GRID, pruning.LAMBDA_START = g, g.index(1e-2)
            try:
                rows[label] = _run(loaded, bundle, s)
            finally:
                pruning.LAMBDA_GRID, pruning.LAMBDA_START = grid, start
        base = rows["1 … 10⁻⁴ (old)"][0]
        for label, (wall, tm, passes, search) in rows.items():
            print(f"| {s} | {label} | {wall:.1f} | {tm['gradients']:.1f} | "
                  f"{tm.get('batchnorm_before', 0.0):.1f} | {tm['solve'] - search:.1f} ({passes}) | "
                  f"{search:.1f} | {wall / base:.2f}× |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
