"""N:M semi-structured sparsity (2:4 by default) on the shared MLPNet and ResNet20, every method.

2:4 keeps 2 of every 4 consecutive weights along each layer's inputs: the pattern sparse tensor
cores run (``PruneRequest.pattern``; CLI ``prune --pattern 2:4``; the app's *Pattern* box). For
each model this prunes with magnitude, OBD, WoodFisher, CHITA and CHITA++ under the pattern and, as the
baseline measured in the same run, with the same method unstructured at the pattern's sparsity
(global budget), the engine's defaults otherwise (n = 1000, λ chosen on held-out calibration
loss; ResNet20 with and without BatchNorm recalibration). It prints the accuracy on the shared
test images with its 95% interval, the change against magnitude under the pattern and against
the same method unstructured (both paired on the same images), the sparsity over the preset's
weights (layers without blocks of M stay dense and count as kept), CHITA's objective against
the backsolve on the pattern's magnitude mask, and the seconds, with their ratio to the
unstructured run's.

    python benchmarks/nm_pattern.py [--models mlpnet,resnet20] [--pattern 2:4]
        [--methods magnitude,obd,woodfisher,chita,chita++]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared_models import accuracy_text, points_text, shared_or_exit  # noqa: E402  (imports core first)

from core.evaluate import evaluate, paired_difference  # noqa: E402
from core.pruning import PruneRequest, apply_result, prune  # noqa: E402
from core.sparsity_pattern import check_pattern, parse_pattern  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="mlpnet,resnet20")
    ap.add_argument("--pattern", default="2:4")
    ap.add_argument("--methods", default="magnitude,obd,woodfisher,chita,chita++")
    args = ap.parse_args()
    pattern = parse_pattern(args.pattern)
    assert pattern is not None
    print(f"Pattern {pattern} (sparsity {pattern.sparsity:g} in every block), n = 1000; accuracy % on the "
          "shared test images [95% CI]; differences in points, paired on the same images [95% CI]\n")
    print(f"| model | BatchNorm recalibrated | method | {pattern} accuracy | vs magnitude {pattern} | "
          f"unstructured {pattern.sparsity:g} accuracy | {pattern} vs unstructured | sparsity | "
          f"blocks breaking {pattern} | CHITA objective / magnitude backsolve | {pattern} s | "
          "unstructured s | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.models.split(","):
        loaded, bundle = shared_or_exit(name)
        model = loaded.model
        for recal in ((False, True) if name == "resnet20" else (None,)):
            magnitude_eval = None
            for method in args.methods.split(","):
                runs = {}
                for key, kind in (("pattern", str(pattern)), ("free", "")):
                    t0 = time.perf_counter()
                    res = prune(model, bundle.calibration,
                                PruneRequest(method=method, sparsity=pattern.sparsity, pattern=kind,
                                             samples=1000, recalibrate_bn=recal), arch=name)
                    seconds = time.perf_counter() - t0
                    runs[key] = (res, evaluate(apply_result(model, res), bundle.evaluation), seconds)
                res, ev, seconds = runs["pattern"]
                free, free_ev, free_s = runs["free"]
                if method == "magnitude":
                    magnitude_eval = ev
                broken = sum(v or 0 for v in check_pattern(res.weights, pattern).values())
                final = (res.info.get("final") or [{}])[-1]
                objective = (f"{final['objective']:.4g} / {final['magnitude_objective']:.4g}"
                             if final.get("objective") is not None else "–")
                versus = points_text(paired_difference(ev, magnitude_eval)) if magnitude_eval is not None \
                    and method != "magnitude" else "–"
                print(f"| {name} | {'–' if recal is None else ('yes' if recal else 'no')} | {method} | "
                      f"{accuracy_text(ev)} | {versus} | {accuracy_text(free_ev)} | "
                      f"{points_text(paired_difference(ev, free_ev))} | {100 * res.sparsity:.2f}% | {broken} | "
                      f"{objective} | {seconds:.1f} | {free_s:.1f} | {seconds / free_s:.2f}× |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
