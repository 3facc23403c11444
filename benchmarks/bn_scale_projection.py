"""Tried and not adopted: gradients that know BatchNorm recalibration will follow the pruning.

After a BatchNorm recalibration the loss no longer depends on the scale of a convolution's output
channel: scaling the channel's weights w_c by α scales its pre-BatchNorm output, its mean and its
standard deviation by α, and the recalibrated layer gives the same output. So along each w_c the
true curvature is zero, while the per-sample gradients (BatchNorm in eval mode, fixed statistics)
see one. This script removes that direction from every gradient row, per output channel,

    g_c ← g_c − (g_c · ŵ_c) ŵ_c,        ŵ_c = w̄_c / ‖w̄_c‖,

for every Conv2d whose output goes straight into a BatchNorm2d, and runs single-stage CHITA with
recalibration both ways on ResNet20. It reaches into ``core.pruning._Context.gradients`` to do so.
What decides is the held-out calibration loss (of the network the run returns, statistics
included), the quantity the engine decides on; the held-out accuracy (the same 500 training
images) and the test accuracy are printed beside it.

    python benchmarks/bn_scale_projection.py [--sparsities 0.7,0.8,0.9] [--seeds 0,1,2,3,4]
"""

from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared_models import load_shared  # noqa: E402

from core.evaluate import evaluate, paired_difference  # noqa: E402
from core.pruning import PruneRequest, _Context, apply_result, prune  # noqa: E402


def conv_into_batchnorm(model: nn.Module, x: torch.Tensor) -> set[str]:
    """Names of the Conv2d modules whose output tensor is a BatchNorm2d's input (one forward)."""
    produced: dict[int, str] = {}
    found: set[str] = set()
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(
                lambda _m, _i, out, name=name: produced.__setitem__(id(out), name)))
        elif isinstance(m, nn.BatchNorm2d):
            hooks.append(m.register_forward_pre_hook(
                lambda _m, inp: found.add(produced[id(inp[0])]) if id(inp[0]) in produced else None))
    try:
        with torch.no_grad():
            model(x[:2])
    finally:
        for h in hooks:
            h.remove()
    return found


@contextmanager
def projected_gradients() -> Iterator[None]:
    """Within the block, every G the engine builds has the channel-scale direction removed."""
    original = _Context.gradients

    def gradients(self, work, timings):
        A = original(self, work, timings)
        convs = conv_into_batchnorm(work, self.x_g)
        params = dict(work.named_parameters())
        for name, sl in zip(self.names, self.groups):
            if name.removesuffix(".weight") not in convs:
                continue
            W = params[name].detach()
            w_hat = W.reshape(W.shape[0], -1)
            w_hat = w_hat / w_hat.norm(dim=1, keepdim=True).clamp_min(1e-12)
            block = A[:, sl].view(A.shape[0], W.shape[0], -1)  # n × channels × fan-in, a view
            block -= torch.einsum("ncf,cf->nc", block, w_hat)[..., None] * w_hat[None]
        self.fbar = float(torch.linalg.vector_norm(A)) ** 2 / A.shape[1]
        return A

    _Context.gradients = gradients
    try:
        yield
    finally:
        _Context.gradients = original


def held_out(model: nn.Module, result, calibration, req: PruneRequest) -> tuple[float, float]:
    """(loss, accuracy) of the pruned network on the run's own held-out calibration images."""
    ctx = _Context.build(model, calibration, req, "resnet20", None, None, refresh_bn=False)
    pruned = apply_result(model, result)
    with torch.no_grad():
        logits = torch.cat([pruned(ctx.x_h[i:i + 250]) for i in range(0, len(ctx.x_h), 250)])
    loss = float(torch.nn.functional.cross_entropy(logits, ctx.y_h))
    return loss, float((logits.argmax(1) == ctx.y_h).float().mean())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sparsities", default="0.7,0.8,0.9")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    args = ap.parse_args()
    shared = load_shared("resnet20")
    if shared is None:
        return 2
    loaded, bundle = shared
    sparsities = [float(s) for s in args.sparsities.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    print("ResNet20, single-stage CHITA with BatchNorm recalibration, n = 1000; held-out loss and "
          "accuracy % on the run's 500 held-out training images (the returned network, statistics "
          "included); test accuracy % on the 846 test images; Δ = projected − plain on the same test "
          "images, paired 95% interval\n")
    print("| seed | sparsity | magnitude+recal test acc | held-out loss plain / projected | held-out "
          "acc plain / projected | test acc plain | test acc projected | Δ points [paired 95%] |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    lower, higher, gains = 0, 0, []
    for seed in seeds:
        for s in sparsities:
            req = PruneRequest(method="chita", sparsity=s, samples=1000, seed=seed, recalibrate_bn=True)
            mag = evaluate(apply_result(loaded.model, prune(loaded.model, bundle.calibration,
                                                            replace(req, method="magnitude"),
                                                            arch="resnet20")), bundle.evaluation)
            plain = prune(loaded.model, bundle.calibration, req, arch="resnet20")
            with projected_gradients():
                proj = prune(loaded.model, bundle.calibration, req, arch="resnet20")
            ev_plain = evaluate(apply_result(loaded.model, plain), bundle.evaluation)
            ev_proj = evaluate(apply_result(loaded.model, proj), bundle.evaluation)
            loss_plain, acc_plain = held_out(loaded.model, plain, bundle.calibration, req)
            loss_proj, acc_proj = held_out(loaded.model, proj, bundle.calibration, req)
            lower += loss_proj < loss_plain
            higher += acc_proj > acc_plain
            d = paired_difference(ev_proj, ev_plain)
            gains.append(100 * d.difference)
            lo, hi = d.ci
            print(f"| {seed} | {s} | {100 * mag.accuracy:.2f} | {loss_plain:.4f} / {loss_proj:.4f} | "
                  f"{100 * acc_plain:.1f} / {100 * acc_proj:.1f} | {100 * ev_plain.accuracy:.2f} | {100 * ev_proj.accuracy:.2f} | "
                  f"{100 * d.difference:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}] |", flush=True)
    runs = len(seeds) * len(sparsities)
    print(f"\nProjected gradients lower the held-out loss in {lower} of {runs} runs and raise the "
          f"held-out accuracy in {higher}; mean test accuracy change {sum(gains) / runs:+.2f} points.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
