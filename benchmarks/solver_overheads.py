"""Two overheads of a CHITA solve, measured against the code that had them, in the same process.

1. **The active set's products on one thread.** Every refresh of the mask search builds the pool's
   P = UᵀM⁻¹U (a triangular solve of the n×n Cholesky factor against n × 512 columns, then
   YᵀY). The swap steps after it are small pool-space operations that run on one thread
   (`core.methods.chita._one_thread`); the products used to run there too. Baseline: the
   active set built inside that one-thread block again (patched here).
2. **A fresh G at every CHITA++ stage.** Every stage's G has the same shape; writing it into the
   previous stage's memory skips the first-touch page faults of a new one. Baseline: every stage
   allocates (patched here: `fisher_factor` is called without `out`).

Configurations, run in turn, `--rounds` times (the median is printed):
  before: both overheads (the previous code);  threads: (1) removed;  current: (1) and (2) removed.
Each row says whether the result is equal to the bit to the baseline's (weights and masks).

    python benchmarks/solver_overheads.py [--model mlpnet|resnet20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import core  # noqa: F401  (first: the OpenMP wait policy the app runs with, set before torch loads)

# isort: split
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared_models import shared_or_exit  # noqa: E402

from core import pruning  # noqa: E402
from core.methods import chita  # noqa: E402

CASES = {"mlpnet": [("chita", 0.9), ("chita", 0.98), ("chita++", 0.98)],
         "resnet20": [("chita", 0.5), ("chita", 0.9), ("chita++", 0.9)]}


@contextmanager
def configuration(name: str) -> Iterator[None]:
    """Patch the engine back to the overheads ``name`` keeps (see the module docstring)."""
    init, factor = chita._ActiveSet.__init__, pruning.fisher_factor
    if name == "before":
        def one_thread_init(self, *args, **kwargs):
            with chita._one_thread():
                init(self, *args, **kwargs)
        chita._ActiveSet.__init__ = one_thread_init  # type: ignore[method-assign]
    if name in ("before", "threads"):
        def fresh(*args, out=None, **kwargs):
            return factor(*args, **kwargs)
        pruning.fisher_factor = fresh
    try:
        yield
    finally:
        chita._ActiveSet.__init__ = init  # type: ignore[method-assign]
        pruning.fisher_factor = factor


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="mlpnet", choices=sorted(CASES))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cases", default="", help="method:sparsity,... (default: the model's three)")
    args = ap.parse_args()
    loaded, bundle = shared_or_exit(args.model)
    cases = ([(c.split(":")[0], float(c.split(":")[1])) for c in args.cases.split(",")]
             if args.cases else CASES[args.model])
    configs = ("before", "threads", "current")
    print(f"{args.model}, n = 1000, recalibration off, {torch.get_num_threads()} threads; "
          f"median of {args.rounds} rounds, configurations alternating\n")
    print("| method | sparsity | before s | threads s | current s | threads ÷ before | "
          "current ÷ before | gradients s (before / threads / current) | equal to before |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for method, s in cases:
        req = pruning.PruneRequest(method=method, sparsity=s, recalibrate_bn=False)
        seconds: dict[str, list[float]] = {c: [] for c in configs}
        grads: dict[str, list[float]] = {c: [] for c in configs}
        weights: dict[str, list[torch.Tensor]] = {}
        for _ in range(args.rounds):
            for c in configs:
                with configuration(c):
                    t0 = time.perf_counter()
                    res = pruning.prune(loaded.model, bundle.calibration, req, arch=args.model)
                    seconds[c].append(time.perf_counter() - t0)
                grads[c].append(float(res.timings.get("gradients", 0.0)))
                weights.setdefault(c, [w for w in res.weights.values()] + [m for m in res.masks.values()])
        med = {c: statistics.median(v) for c, v in seconds.items()}
        g = " / ".join(f"{statistics.median(grads[c]):.2f}" for c in configs)
        equal = all(all(torch.equal(a, b) for a, b in zip(weights[c], weights["before"]))
                    for c in configs)
        print(f"| {method} | {s} | {med['before']:.2f} | {med['threads']:.2f} | {med['current']:.2f} | "
              f"{med['threads'] / med['before']:.2f}× | {med['current'] / med['before']:.2f}× | {g} | "
              f"{'yes' if equal else 'no'} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
