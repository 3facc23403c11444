"""What a CHITA sweep shares, and what it cannot: per point, a separate run against the sweep.

Issue 7 asks for a 5-point sweep in at most 2.5× one solve. A sweep (``prune_path``) computes G
once and starts each sparsity's mask search from the previous solution. This script prints, per
point, the separate run's seconds and swap steps beside the sweep's, with λ chosen as usual or
fixed for every point (``--lam``), so that a warm start is judged without λ moving under it.

    python benchmarks/sweep_cost.py [--model mlpnet|resnet20] [--sparsities 0.5,0.7,0.9,0.95,0.98]
        [--lam auto|VALUE]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared_models import SETUPS, load_shared  # noqa: E402

from core.pruning import PruneRequest, prune, prune_path  # noqa: E402


def _steps(result) -> tuple[int, float]:
    """(swap steps, λ) of a CHITA result's solve (the final solve, after any magnitude restart)."""
    final = result.info["final"][-1]
    return int(final["iterations"]), float(final["lam"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="mlpnet", choices=sorted(SETUPS))
    ap.add_argument("--sparsities", default="0.5,0.7,0.9,0.95,0.98")
    ap.add_argument("--lam", default="auto", help="'auto' (held-out walk) or one λ for every point")
    args = ap.parse_args()
    shared = load_shared(args.model)
    if shared is None:
        return 2
    loaded, bundle = shared
    sps = sorted(float(s) for s in args.sparsities.split(","))
    lam = None if args.lam == "auto" else float(args.lam)
    req = PruneRequest(method="chita", sparsity=sps[-1], samples=1000, lam=lam,
                       recalibrate_bn=False if args.model == "resnet20" else None)
    prune(loaded.model, bundle.calibration, replace(req, sparsity=sps[0]), arch=args.model)  # warm-up
    separate = []
    for s in sps:
        t0 = time.perf_counter()
        res = prune(loaded.model, bundle.calibration, replace(req, sparsity=s), arch=args.model)
        separate.append((time.perf_counter() - t0, *_steps(res)))
    t0 = time.perf_counter()
    path = prune_path(loaded.model, bundle.calibration, req, sps, arch=args.model)
    sweep_s = time.perf_counter() - t0
    print(f"{args.model}, single-stage CHITA, n = 1000, λ {args.lam}; seconds include gradients "
          f"(computed once in the sweep, at its first point)\n")
    print("| sparsity | separate run s | separate swap steps | λ | sweep point s | sweep swap steps | λ |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for s, (secs, steps, lam_s), res in zip(sps, separate, path):
        steps_w, lam_w = _steps(res)
        print(f"| {s} | {secs:.2f} | {steps} | {lam_s:.3g} | {res.timings['total']:.2f} | {steps_w} | "
              f"{lam_w:.3g} |")
    one = sum(t for t, _, _ in separate) / len(separate)
    print(f"\nSweep {sweep_s:.2f} s; one run {one:.2f} s on average: the sweep costs {sweep_s / one:.2f}× "
          f"one run and {sweep_s / (one * len(sps)):.2f}× the separate runs; swap steps "
          f"{sum(_steps(r)[0] for r in path)} in the sweep against {sum(n for _, n, _ in separate)} "
          f"separately.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
