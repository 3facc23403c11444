"""Eval-mode forward passes in chunks of a few images: held-out passes and whole runs, before and after.

Every held-out score the engine takes (the λ walk's paired batches of 128 images, the BatchNorm
checks, the recalibration decisions) and every evaluation is an eval-mode forward pass. Since
`core.evaluate.forward_in_chunks`, each such call runs FORWARD_CHUNK images at a time on the
CPU. The baseline is one call per batch (chunk = the batch), as the code did before. Both run
in the same process, alternating, and the logits (and a run's weights and masks) are checked
equal to the bit.

    python benchmarks/forward_chunk.py [--rounds 10] [--chunks 64,32,16] [--runs 2]
                                       [--cases chita:0.5,chita:0.9,sweep]

Part 1 times a held-out pass: 512 calibration images in batches of 128 (`HOLDOUT_BATCH`), on
ResNet20 and MLPNet. Part 2 times whole ResNet20 runs (CHITA without recalibration at one
sparsity, or ``sweep``: CHITA at 0.5 … 0.9 with one G) with the baseline and with
FORWARD_CHUNK, alternating, ``--runs`` times each.
"""

from __future__ import annotations

import argparse
import statistics
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

from core import evaluate as ev  # noqa: E402
from core.pruning import (  # noqa: E402
    HOLDOUT_BATCH,
    PruneRequest,
    _per_image_loss_and_error,
    prune_path,
)

BASELINE = 10**9  # a chunk larger than any batch: one call per batch


def holdout_pass(model, x, y) -> torch.Tensor:
    """Per-image held-out losses of ``x`` in the λ walk's batches."""
    return torch.cat([_per_image_loss_and_error(model, x[i:i + HOLDOUT_BATCH], y[i:i + HOLDOUT_BATCH])[0]
                      for i in range(0, len(x), HOLDOUT_BATCH)])


def part1(arch: str, chunks: list[int], rounds: int) -> None:
    shared = load_shared(arch)
    if shared is None:
        sys.exit(2)
    loaded, bundle = shared
    model = loaded.model.eval()
    x, y = bundle.calibration.x[:512], bundle.calibration.y[:512]
    configs = [BASELINE] + chunks
    times: dict[int, list[float]] = {c: [] for c in configs}
    losses: dict[int, torch.Tensor] = {}
    saved = ev.FORWARD_CHUNK
    try:
        holdout_pass(model, x, y)  # warm-up
        for _ in range(rounds):
            for c in configs:
                ev.FORWARD_CHUNK = c
                t0 = time.perf_counter()
                losses[c] = holdout_pass(model, x, y)
                times[c].append(time.perf_counter() - t0)
    finally:
        ev.FORWARD_CHUNK = saved
    base = statistics.median(times[BASELINE])
    for c in configs:
        med = statistics.median(times[c])
        label = f"one call per batch of {HOLDOUT_BATCH} (baseline)" if c == BASELINE else f"chunks of {c}"
        print(f"| {arch} | {label} | {1000 * min(times[c]):.0f} | {1000 * med:.0f} | {med / base:.2f}× | "
              f"{'yes' if torch.equal(losses[c], losses[BASELINE]) else 'NO'} |", flush=True)


def part2(cases: list[str], runs: int) -> None:
    shared = load_shared("resnet20")
    if shared is None:
        sys.exit(2)
    loaded, bundle = shared
    req = PruneRequest(method="chita", sparsity=0.5, samples=1000, recalibrate_bn=False)
    saved = ev.FORWARD_CHUNK
    for case in cases:
        points = [0.5, 0.6, 0.7, 0.8, 0.9] if case == "sweep" else [float(case.split(":")[1])]
        secs: dict[int, list[float]] = {BASELINE: [], saved: []}
        results: dict[int, list] = {}
        try:
            for _ in range(runs):
                for c in (BASELINE, saved):
                    ev.FORWARD_CHUNK = c
                    t0 = time.perf_counter()
                    results[c] = prune_path(loaded.model, bundle.calibration,
                                            replace(req, sparsity=points[0]), points, arch="resnet20")
                    secs[c].append(time.perf_counter() - t0)
        finally:
            ev.FORWARD_CHUNK = saved
        equal = all(all(torch.equal(a.masks[k], b.masks[k]) and torch.equal(a.weights[k], b.weights[k])
                        for k in a.weights) for a, b in zip(results[BASELINE], results[saved]))
        b, c = statistics.median(secs[BASELINE]), statistics.median(secs[saved])
        label = "sweep 0.5–0.9" if case == "sweep" else f"chita {points[0]}"
        print(f"| {label} | {' / '.join(f'{s:.2f}' for s in secs[BASELINE])} | "
              f"{' / '.join(f'{s:.2f}' for s in secs[saved])} | {c / b:.2f}× | {'yes' if equal else 'NO'} |",
              flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=10, help="alternating rounds of part 1")
    ap.add_argument("--chunks", default="64,32,16", help="chunk sizes to time in part 1")
    ap.add_argument("--runs", type=int, default=2, help="alternating runs of each case in part 2")
    ap.add_argument("--cases", default="chita:0.5,chita:0.9,sweep",
                    help="part 2: chita:S (one run at sparsity S) or sweep; empty to skip")
    args = ap.parse_args()
    chunks = [int(c) for c in args.chunks.split(",") if c]
    print(f"Held-out pass: 512 calibration images in batches of {HOLDOUT_BATCH}, per-image losses; "
          f"{args.rounds} alternating rounds, {torch.get_num_threads()} threads\n")
    print("| model | forward calls | best ms | median ms | median ÷ baseline | equal |")
    print("| --- | --- | --- | --- | --- | --- |")
    for arch in ("resnet20", "mlpnet"):
        part1(arch, chunks, args.rounds)
    cases = [c for c in args.cases.split(",") if c]
    if cases:
        print(f"\nResNet20 runs, CHITA without recalibration, n = 1000; one call per batch (baseline) "
              f"against chunks of {ev.FORWARD_CHUNK}, {args.runs} alternating runs each; seconds per run\n")
        print(f"| run | baseline s | chunks of {ev.FORWARD_CHUNK} s | median ratio | same weights and masks |")
        print("| --- | --- | --- | --- | --- |")
        part2(cases, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
