"""Opening ONNX files: fidelity and speed of the imported graph against the network it came from.

Each network is exported with the app's exporter, its initializers renamed (w0, w1, …) so that no
known architecture matches and the graph itself is run (core.onnx_import.OnnxGraphModule), and
opened with ``core.model_io.load_model``. Measured in the same run:

- seconds to open the file;
- the largest |difference| between the graph's outputs in PyTorch and onnxruntime's on the same
  batch, relative to the largest output;
- a forward pass of 32 images: the original module against the imported graph (median of
  ``--repeat``), and their ratio;
- for the demo and the ../shared checkpoints, the per-sample gradients G (n = 256) the engine
  prunes with, on both, and their ratio (``core.fisher.per_sample_gradients``; the same rows).

Networks: digits_cnn (demo), MLPNet and ResNet20 (../shared, when present), and torchvision's
ResNet-18, MobileNetV3-S, EfficientNet-B0, DenseNet-121 and ConvNeXt-T with random weights at
3×32×32.

    python benchmarks/onnx_import.py [--repeat 5] [--no-torchvision]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import core  # noqa: E402, F401  (first: the OpenMP wait policy the app runs with, set before torch loads)

# isort: split
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

from core.export import export_onnx  # noqa: E402
from core.fisher import per_sample_gradients  # noqa: E402
from core.model_io import load_model  # noqa: E402
from core.prunable import prunable_parameters  # noqa: E402
from tests.onnx_files import anonymous  # noqa: E402  (the tests' renaming of an ONNX file's weights)

SHARED = ROOT.parent / "shared"


def _median_s(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def networks(torchvision_too: bool) -> list[tuple[str, torch.nn.Module, tuple[int, ...], bool]]:
    """(name, model, input shape, whether to time G)."""
    out = [("digits_cnn (demo)", load_model("demo:digits_cnn").model, (1, 8, 8), True)]
    if (SHARED / "models").is_dir():
        out.append(("MLPNet", load_model(SHARED / "models" / "mlpnet_mnist.pt", arch="mlpnet").model,
                    (1, 28, 28), True))
        out.append(("ResNet20", load_model(SHARED / "models" / "resnet20_cifar10.pt", arch="resnet20").model,
                    (3, 32, 32), True))
    else:
        print(f"(no {SHARED / 'models'}: MLPNet and ResNet20 skipped)", file=sys.stderr)
    if torchvision_too:
        import torchvision

        for name in ("resnet18", "mobilenet_v3_small", "efficientnet_b0", "densenet121", "convnext_tiny"):
            torch.manual_seed(0)
            out.append((name, getattr(torchvision.models, name)(num_classes=10).eval(), (3, 32, 32), False))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-torchvision", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="onnx-import-"))
    print(f"onnxruntime {ort.__version__}, torch {torch.__version__}; forward: 32 images, median of {args.repeat}\n")
    print("| network | nodes | open s | loaded as | max abs diff vs onnxruntime (relative) "
          "| forward ms: original | imported | ratio | G s (n = 256): original | imported | ratio |")
    print("| --- " * 12 + "|")
    for name, model, shape, with_g in networks(not args.no_torchvision):
        file = folder / f"{name.split()[0]}.onnx"
        export_onnx(model, torch.randn(2, *shape), file)
        file = anonymous(file, file.with_name("anon_" + file.name))
        t0 = time.perf_counter()
        loaded = load_model(file)
        open_s = time.perf_counter() - t0
        graph = loaded.model
        x = torch.randn(32, *shape, generator=torch.Generator().manual_seed(0))
        session = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
        want = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        with torch.no_grad():
            got = graph(x).numpy()
            diff = float(np.abs(got - want).max() / max(1e-12, np.abs(want).max()))
            fwd = [_median_s(lambda m=m: m(x), args.repeat) for m in (model, graph)]
        g_cells = "— | — | —"
        if with_g:
            y = torch.randint(0, 10, (256,), generator=torch.Generator().manual_seed(1))
            xs = torch.randn(256, *shape, generator=torch.Generator().manual_seed(2))
            gs = []
            for m in (model, graph):
                names = prunable_parameters(m, preset="all")
                gs.append(_median_s(lambda m=m, names=names: per_sample_gradients(m, xs, y, names), 3))
            g_cells = f"{gs[0]:.3f} | {gs[1]:.3f} | {gs[1] / gs[0]:.2f}×"
        nodes = len(onnx.load(str(file)).graph.node)
        kind = type(graph).__name__ if loaded.arch is None else loaded.arch
        print(f"| {name} | {nodes} | {open_s:.2f} | {kind} | {diff:.1e} | {1000 * fwd[0]:.1f} | {1000 * fwd[1]:.1f} "
              f"| {fwd[1] / fwd[0]:.2f}× | {g_cells} |", flush=True)


if __name__ == "__main__":
    main()
