"""What refining the kept weights after pruning (``PruneRequest.refine_steps``) buys, per method.

Each row prunes the shared checkpoint once per seed, evaluates the result on the shared test
images, then refines that result by up to ``--steps`` steps (``core.pruning.refine_result``,
the same steps as a run with ``refine_steps``, tests/test_refine.py) and evaluates it again. The
refinement keeps the mask and takes damped Gauss–Newton steps with gradients from every
calibration image but the held-out ones, each kept only if held-out calibration loss falls
(core/refine.py); the test images are never used to choose anything. CHITA++ rows prune all
sparsities of a seed along one schedule (``prune_path``), as a sweep does.

    python benchmarks/refine.py [--model mlpnet|resnet20] [--methods magnitude,chita,chita++]
                                [--sparsities 0.9,0.95,0.98] [--seeds 0] [--steps 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared_models import SETUPS, load_shared, prune_at  # noqa: E402

from core.evaluate import evaluate, wilson_interval  # noqa: E402
from core.pruning import PruneRequest, apply_result, refine_result  # noqa: E402


def _runs(loaded, bundle, arch, method, sparsities, seed, steps):
    """Per sparsity, without and with refinement: (accuracy %, n, seconds, refinement log,
    refine seconds), the pruning done once."""
    req = PruneRequest(method=method, sparsity=sparsities[-1], samples=1000, seed=seed)
    results, seconds = prune_at(loaded, bundle, arch, req, sparsities)
    plain, refined = [], []
    for res, secs in zip(results, seconds):
        ev = evaluate(apply_result(loaded.model, res), bundle.evaluation)
        plain.append((100 * ev.accuracy, ev.n, secs, [], 0.0))
        better = refine_result(loaded.model, bundle.calibration, res, steps, arch=arch)
        ev = evaluate(apply_result(loaded.model, better), bundle.evaluation)
        refined.append((100 * ev.accuracy, ev.n, secs, better.info["refinement"],
                        better.timings["refine"]))
    return plain, refined


def fmt_accuracy(accs: list[float], n: int) -> str:
    """One seed: accuracy with its 95% interval; several: mean ± sd."""
    if len(accs) == 1:
        lo, hi = wilson_interval(round(accs[0] * n / 100), n)
        return f"{accs[0]:.2f} [{100 * lo:.2f}, {100 * hi:.2f}]"
    return f"{statistics.mean(accs):.2f} ± {statistics.stdev(accs):.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="mlpnet", choices=sorted(SETUPS))
    ap.add_argument("--methods", default="magnitude,chita,chita++")
    ap.add_argument("--sparsities", default="0.9,0.95,0.98")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    shared = load_shared(args.model)
    if shared is None:
        return 2
    loaded, bundle = shared
    sparsities = sorted(float(s) for s in args.sparsities.split(","))
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"{args.model}, n = 1000, accuracy % on {len(bundle.evaluation.y)} test images "
          f"({'95% interval' if len(seeds) == 1 else f'mean ± sd over seeds {args.seeds}'}), "
          f"default BatchNorm handling, refinement of up to {args.steps} steps\n")
    print("| method | sparsity | without | with refinement | Δ (paired mean) | steps taken "
          "| held-out loss before → after | run s | refine s | refine / run |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for method in args.methods.split(","):
        runs = {seed: _runs(loaded, bundle, args.model, method, sparsities, seed, args.steps)
                for seed in seeds}
        plain = {seed: runs[seed][0] for seed in seeds}
        refined = {seed: runs[seed][1] for seed in seeds}
        for j, s in enumerate(sparsities):
            a0 = [plain[seed][j][0] for seed in seeds]
            a1 = [refined[seed][j][0] for seed in seeds]
            n = plain[seeds[0]][j][1]
            logs = [refined[seed][j][3] for seed in seeds]
            taken = statistics.mean(sum(st["accepted"] for st in log) for log in logs)
            before = statistics.mean(log[0]["holdout_loss_before"] for log in logs)
            after = statistics.mean(log[-1]["holdout_loss_after"] for log in logs)
            run_s = statistics.mean(plain[seed][j][2] for seed in seeds)
            ref_s = statistics.mean(refined[seed][j][4] for seed in seeds)
            delta = statistics.mean(b - a for a, b in zip(a0, a1))
            print(f"| {method} | {s} | {fmt_accuracy(a0, n)} | {fmt_accuracy(a1, n)} | {delta:+.2f} | {taken:.1f} "
                  f"| {before:.3f} → {after:.3f} | {run_s:.1f} | {ref_s:.1f} | {ref_s / run_s:.2f}× |",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
