"""Repeated runs on one model (the GUI's slider): a second run with the first run's G kept.

The GUI keeps the last run's per-sample gradients and refreshed starting point in a
`core.pruning.GradientCache`; a run on the same model, data and sample at another sparsity
skips the gradient pass and the BatchNorm refresh check. This runs CHITA with the default
request (BatchNorm recalibration on for ResNet20) at a first sparsity, then at each next one
both without the cache (the baseline, a fresh run) and with it, checks that both give the same
masks and weights, and prints the seconds.

    python benchmarks/gradient_cache.py [--model resnet20] [--method chita] [--first 0.7]
                                        [--next 0.5,0.8,0.9]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import core  # noqa: F401  (first: the OpenMP wait policy the app runs with, set before torch loads)

# isort: split
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared_models import load_shared  # noqa: E402

from core.pruning import GradientCache, PruneRequest, prune  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet20", choices=("resnet20", "mlpnet"))
    ap.add_argument("--method", default="chita", choices=("chita", "obd", "woodfisher"))
    ap.add_argument("--first", type=float, default=0.7)
    ap.add_argument("--next", default="0.5,0.8,0.9")
    args = ap.parse_args()
    shared = load_shared(args.model)
    if shared is None:
        return 2
    loaded, bundle = shared
    model, cal = loaded.model, bundle.calibration
    cache = GradientCache()
    req = PruneRequest(method=args.method, sparsity=args.first)
    t0 = time.perf_counter()
    prune(model, cal, req, arch=args.model, cache=cache)
    first = time.perf_counter() - t0
    print(f"{args.model}, {args.method}, default request (n = 1000), first run at {args.first}: {first:.1f} s "
          "(fills the cache)\n")
    print("| next sparsity | fresh run (s) | with the kept G (s) | ratio | same masks and weights |")
    print("| --- | --- | --- | --- | --- |")
    for s in (float(v) for v in args.next.split(",")):
        t0 = time.perf_counter()
        fresh = prune(model, cal, replace(req, sparsity=s), arch=args.model)
        t_fresh = time.perf_counter() - t0
        t0 = time.perf_counter()
        kept = prune(model, cal, replace(req, sparsity=s), arch=args.model, cache=cache)
        t_kept = time.perf_counter() - t0
        assert kept.info.get("gradients_reused") is True
        same = all(torch.equal(fresh.masks[k], kept.masks[k]) and torch.equal(fresh.weights[k], kept.weights[k])
                   for k in fresh.masks)
        print(f"| {s} | {t_fresh:.1f} | {t_kept:.1f} | {t_kept / t_fresh:.2f}× | {'yes' if same else 'no'} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
