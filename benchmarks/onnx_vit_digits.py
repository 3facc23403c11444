"""An attention network from an ONNX file, pruned: a small ViT on the digits, every method.

The literature's checkpoints are an MLP and a ResNet. This trains a small vision transformer
(patches of 2×2 pixels, a class token, 3 blocks of ``nn.MultiheadAttention`` and an MLP, 56 k
weights) on the digits' calibration split (seeded, about a minute), exports it with the app's
exporter, and opens the file as a user would (``core.model_io.load_model``): the graph runs with
PyTorch operators, the attention's input and output projections become prunable ``nn.Linear``
layers, and since they see (tokens, images, features) rather than the images first, the
per-sample gradients come from torch.func (``chita-studio info FILE`` says so).

Each method then prunes the opened graph at each sparsity with the app's defaults
(``core.pruning.prune``; n = 1000 gradient rows from the calibration split); accuracy on the 539
held-out evaluation images with its 95% Wilson interval, and the seconds of the run. Magnitude is
the baseline, measured in the same run; "vs magnitude" is the difference in points on the same
images, with its matched-pairs 95% interval (``core.evaluate.paired_difference``).

    python benchmarks/onnx_vit_digits.py [--sparsities 0.5,0.7,0.8,0.9] [--methods ...] [--out vit.onnx]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import core  # noqa: E402, F401  (first: the OpenMP wait policy the app runs with, set before torch loads)

# isort: split
import torch  # noqa: E402
from torch import nn  # noqa: E402

from core.data import load_bundle  # noqa: E402
from core.evaluate import evaluate, paired_difference  # noqa: E402
from core.export import export_onnx  # noqa: E402
from core.fisher import supports_closed_form  # noqa: E402
from core.model_io import load_model  # noqa: E402
from core.pruning import PruneRequest, apply_result, default_layers, prune  # noqa: E402


class Block(nn.Module):
    """Pre-norm transformer block: attention, then an MLP, each with a residual."""

    def __init__(self, d: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, mlp), nn.GELU(), nn.Linear(mlp, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class DigitsViT(nn.Module):
    """16 patches of 2×2 pixels of an 8×8 digit and a class token, 3 blocks, a linear head."""

    def __init__(self, d: int = 48, depth: int = 3, heads: int = 4, mlp: int = 96) -> None:
        super().__init__()
        self.patch = nn.Conv2d(1, d, 2, stride=2)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.randn(1, 17, d) * 0.02)
        self.blocks = nn.Sequential(*[Block(d, heads, mlp) for _ in range(depth)])
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], 1) + self.pos
        return self.head(self.norm(self.blocks(t))[:, 0])


def train(bundle, epochs: int = 80, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = DigitsViT()
    opt = torch.optim.AdamW(model.parameters(), 3e-3, weight_decay=0.05)
    x, y = bundle.calibration.x, bundle.calibration.y
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = order[i:i + 64]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def cell(ev) -> str:
    lo, hi = ev.accuracy_ci
    return f"{100 * ev.accuracy:.2f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsities", default="0.5,0.7,0.8,0.9")
    parser.add_argument("--methods", default="magnitude,obd,woodfisher,chita,chita++")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--out", help="where to keep the trained network's ONNX file (default: a temporary folder)")
    args = parser.parse_args()
    bundle = load_bundle("digits")
    t0 = time.perf_counter()
    model = train(bundle)
    train_s = time.perf_counter() - t0
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="vit-digits-")) / "digits_vit.onnx"
    report = export_onnx(model, bundle.calibration.x[:2], out)
    loaded = load_model(out)
    graph = loaded.model
    names = default_layers(graph, loaded.arch)
    dense = evaluate(graph, bundle.evaluation)
    print(f"torch {torch.__version__}; trained in {train_s:.0f} s; {out.name}: {report.onnx_bytes:,} bytes, "
          f"{len(names)} prunable tensors, {sum(graph.get_parameter(n).numel() for n in names):,} weights; "
          f"gradient rows: {'closed form' if supports_closed_form(graph, names) else 'torch.func'}; "
          f"dense {cell(dense)} on {len(bundle.evaluation.y)} evaluation images\n")
    print("| method | sparsity | accuracy % [95% interval] | vs magnitude, points [95% interval] | seconds |")
    print("| --- | --- | --- | --- | --- |")
    for sparsity in (float(s) for s in args.sparsities.split(",")):
        base = None
        for method in args.methods.split(","):
            request = PruneRequest(method=method, sparsity=sparsity, samples=args.samples)
            t0 = time.perf_counter()
            result = prune(graph, bundle.calibration, request)
            seconds = time.perf_counter() - t0
            ev = evaluate(apply_result(graph, result), bundle.evaluation)
            if method == "magnitude":
                base = ev
            delta = "—"
            if base is not None and method != "magnitude":
                d = paired_difference(ev, base)
                delta = f"{100 * d.difference:+.2f} [{100 * d.ci[0]:+.1f}, {100 * d.ci[1]:+.1f}]"
            print(f"| {method} | {sparsity:.2f} | {cell(ev)} | {delta} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
