"""CHITA on torchvision networks of other shapes: seconds, peak memory and the exported file.

The literature's two checkpoints are an MLP and a ResNet. A user brings other shapes: depthwise
and grouped convolutions with squeeze-excitation (MobileNetV3, EfficientNet), channel shuffles
(ShuffleNetV2), a 1×1-convolution classifier (SqueezeNet), dense concatenations (DenseNet),
LayerNorm and 7×7 depthwise blocks (ConvNeXt), windowed attention (Swin), grouped bottlenecks
(ResNeXt). Each is built with torchvision's random initialisation and a 10-class head, saved as a
state_dict (the app reads the class count from the file), and pruned from the CLI on 200 real
CIFAR-10 calibration images at their 32×32 size, each run in its own process:

- magnitude (the baseline, same process set-up) and CHITA at 50% global sparsity, n gradient
  rows (default 32: networks of 1.5–28 M weights; ``check_memory`` says how many rows fit);
- the run's seconds, the process's peak memory (``ru_maxrss``), CHITA's objective against the
  backsolve on the magnitude mask, and the exported ONNX file (dense and deflate-compressed
  size, the largest output difference onnxruntime shows against torch).

Random weights make accuracy meaningless here, so none is printed; the question is whether each
shape runs, how long it takes and what it exports. Needs ../shared (CIFAR-10 images).

With ``--pattern 2:4`` both methods prune to that N:M pattern (the sparsity is then the
pattern's) and a last column gives the patterns the exported file's weights keep, read back
from the file by the export.

    python benchmarks/torchvision_zoo.py [--archs a,b,...] [--samples 32] [--pattern 2:4]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import core  # noqa: E402, F401  (first: the OpenMP wait policy the app runs with, set before torch loads)

# isort: split
import torch  # noqa: E402

from core.architectures import build_architecture  # noqa: E402
from core.errors import StudioError  # noqa: E402
from core.fisher import check_memory  # noqa: E402

SHARED = ROOT.parent / "shared"
ARCHS = ("mobilenet_v3_small,shufflenet_v2_x0_5,squeezenet1_1,efficientnet_b0,densenet121,"
         "resnext50_32x4d,convnext_tiny,swin_t")
CLI = "import sys; from core.cli import main; sys.exit(main(sys.argv[1:]))"


def run_cli(args: list[str]) -> tuple[dict, float]:
    """One CLI run in a fresh process: its JSON and its peak resident memory in GiB."""
    proc = subprocess.Popen([sys.executable, "-c", CLI, *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])} failed ({proc.returncode}): {err.strip()[-400:]}")
    return json.loads(out), usage.ru_maxrss / 2**20  # KiB → GiB


def rows_that_fit(p: int, n: int = 1000) -> str:
    """'yes' when n rows of G fit the memory budget, else the largest n that does."""
    try:
        check_memory(n, p)
        return "yes"
    except StudioError as exc:
        fits = re.search(r"at most (\d+)", exc.fix or "")
        return f"no (≤ {int(fits.group(1)):,})" if fits else "no"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archs", default=ARCHS)
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--sparsity", type=float, default=0.5)
    ap.add_argument("--pattern", default="", help="N:M, e.g. 2:4 (the sparsity is then the pattern's)")
    args = ap.parse_args()
    if args.pattern:
        from core.sparsity_pattern import parse_pattern

        args.sparsity = parse_pattern(args.pattern).sparsity
    if not (SHARED / "data" / "cifar10").is_dir():
        print(f"{SHARED}/data/cifar10 is missing: this benchmark needs the CIFAR-10 images.")
        return 2
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; CHITA and magnitude at "
          f"{args.sparsity:.0%}{f' in the {args.pattern} pattern' if args.pattern else ''}, n = "
          f"{args.samples} gradient rows, 200 calibration images, 3×32×32, random weights with a "
          "10-class head\n")
    extra = " layers left dense | file keeps |" if args.pattern else ""
    print("| network | prunable weights | n = 1000 fits? | magnitude s | CHITA s (gradients / solve) "
          "| CHITA ÷ magnitude | peak GiB (magnitude / CHITA) | objective ÷ magnitude backsolve "
          "| ONNX MiB (compressed) | max abs diff |" + extra)
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |" + (" --- | --- |" if args.pattern else ""))
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs.split(","):
            torch.manual_seed(0)
            ckpt = Path(tmp) / f"{arch}.pt"
            torch.save(build_architecture(arch, num_classes=10).state_dict(), ckpt)
            common = [str(ckpt), "--arch", arch, "--data", str(SHARED / "data" / "cifar10"),
                      "--input-shape", "3,32,32", "--sparsity", str(args.sparsity),
                      "--samples", str(args.samples), "--max-calibration", "200",
                      "--max-eval", "16", "--json", "-q"] + (["--pattern", args.pattern] if args.pattern else [])
            try:
                mag, mag_gib = run_cli(["prune", *common, "--method", "magnitude"])
                onnx = Path(tmp) / f"{arch}.onnx"
                chita, chita_gib = run_cli(["prune", *common, "--method", "chita", "--out", str(onnx)])
            except RuntimeError as exc:
                print(f"| {arch} | failed: {exc} | | | | | | | | |", flush=True)
                continue
            t, tm = chita["timings"], mag["timings"]["total"]
            ex = chita["export"]
            print(f"| {arch} | {chita['prunable_weights']:,} | {rows_that_fit(chita['prunable_weights'])} "
                  f"| {tm:.1f} | {t['total']:.1f} ({t.get('gradients', 0):.1f} / {t.get('solve', 0):.1f}) "
                  f"| {t['total'] / tm:.1f}× | {mag_gib:.2f} / {chita_gib:.2f} "
                  f"| {chita['objective'] / chita['magnitude_objective']:.4f} "
                  f"| {ex['onnx_bytes'] / 2**20:.1f} ({ex['compressed_bytes'] / 2**20:.1f}) "
                  f"| {ex['max_abs_diff']:.1e} |"
                  + (f" {len(chita['pattern']['dense_layers'])} | {', '.join(ex['sparsity_patterns']) or 'none'} |"
                     if args.pattern else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
