"""Which of torchvision's classifiers open as ONNX graphs, and how faithfully.

Each network of ``torchvision.models.list_models(module=torchvision.models)`` (or ``--archs``) is
built with random weights and a 10-class head (weights torchvision starts at zero, as ViT's head,
are drawn instead, so that outputs differ), exported with the app's exporter
(``core.export.export_onnx``: verified in onnxruntime), its initializers renamed so that no known
architecture matches (the graph itself then runs, ``core.onnx_import.OnnxGraphModule``), and
opened with ``core.model_io.load_model``. Printed per network:

- input size (64×64, or the size the network needs: 224 for attention networks, 299 for
  Inception), graph nodes, seconds to export and to open;
- the largest |difference| between the imported graph's outputs and onnxruntime's on 2 images,
  relative to the largest output;
- prunable layers, and how many of them the closed form takes: those whose input keeps the
  images where it finds them (``batch_layouts``: first, on another dimension, or folded into the
  first with tokens or windows); so which path the engine's per-sample gradients take (closed
  form, or torch.func for all);
- or why the network did not export or open.

With ``--exporter torchscript`` or ``dynamo`` each network is exported as a user's
``torch.onnx.export`` writes it (dynamo: torch's default exporter since 2.9), with an open batch;
with ``--fixed-batch`` also without dynamic axes (the batch fixed at 1 and folded into constant
shapes), and the imported graph runs 2 images at once against onnxruntime's outputs one image at
a time.

With ``--re-export`` each opened graph is also pruned (half of every weight, magnitude) and
exported again by the app, traced on 2 images and verified in onnxruntime on 3.

    python benchmarks/onnx_zoo.py [--archs resnet18,vit_b_16,...] [--exporter app|torchscript|dynamo]
        [--fixed-batch] [--re-export]

All networks: about 25 minutes on the 2-core VM, most of it exporting the largest ones.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import core  # noqa: E402, F401  (first: the OpenMP wait policy the app runs with, set before torch loads)

# isort: split
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402

from core.errors import StudioError  # noqa: E402
from core.export import export_onnx  # noqa: E402
from core.fisher import supports_closed_form  # noqa: E402
from core.model_io import load_model  # noqa: E402
from core.prunable import prunable_parameters  # noqa: E402
from tests.onnx_files import anonymous  # noqa: E402  (the tests' renaming of an ONNX file's weights)


def input_size(name: str) -> int:
    """Attention networks need their native size (patches and windows); Inception needs 75+."""
    if name.startswith("inception"):
        return 299
    return 224 if name.startswith(("vit", "swin", "maxvit", "googlenet")) else 64


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    kwargs: dict = {"num_classes": 10}
    if name in ("googlenet", "inception_v3"):
        kwargs.update(aux_logits=False, init_weights=False)
    model = torchvision.models.get_model(name, **kwargs).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1 and not p.any():  # zero-initialised heads (ViT): every output would be 0
                p.normal_(0, 0.02)
    return model


def _export_as_user(model: torch.nn.Module, x: torch.Tensor, file: Path, exporter: str, fixed_batch: bool) -> None:
    """As a user's ``torch.onnx.export`` writes it: with the TorchScript exporter (opset 17) or
    torch's default since 2.9, the dynamo exporter; without dynamic axes the batch is fixed at 1
    (and folded into constant shapes), else left open."""
    import warnings

    with warnings.catch_warnings():  # gradients on: no_grad would take attention's fused path, which
        warnings.simplefilter("ignore")  # the TorchScript exporter cannot write
        if exporter == "dynamo":
            open_batch = {} if fixed_batch else {"dynamic_shapes": ({0: torch.export.Dim("batch")},)}
            torch.onnx.export(model, (x[:1] if fixed_batch else x,), str(file), input_names=["input"],
                              output_names=["output"], **open_batch)
        else:
            open_batch = {} if fixed_batch else {"dynamic_axes": {"input": {0: "batch"}, "output": {0: "batch"}}}
            torch.onnx.export(model, (x[:1] if fixed_batch else x,), str(file), dynamo=False,
                              input_names=["input"], output_names=["output"], opset_version=17, **open_batch)


def row(name: str, folder: Path, fixed_batch: bool = False, exporter: str = "app", re_export: bool = False) -> str:
    size = input_size(name)
    model = build(name)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    file = folder / f"{name}.onnx"
    t0 = time.perf_counter()
    try:
        with open(os.devnull, "w") as quiet, redirect_stdout(quiet), redirect_stderr(quiet):  # they print graphs
            if exporter == "app":
                export_onnx(model, x, file)
            else:
                _export_as_user(model, x, file, exporter, fixed_batch)
    except Exception as err:  # noqa: BLE001 - StudioError from ours, anything from torch.onnx
        return f"| {name} | {size} | — | — | — | — | — | — | not exported: {str(err).split('What to do')[0][:140]} |"
    export_s = time.perf_counter() - t0
    del model
    gc.collect()
    anon = anonymous(file, folder / f"anon_{name}.onnx")
    file.unlink()
    nodes = len(onnx.load(str(anon), load_external_data=False).graph.node)
    t0 = time.perf_counter()
    try:
        graph = load_model(anon).model
    except StudioError as err:
        anon.unlink()
        return (f"| {name} | {size} | {nodes} | {export_s:.1f} | — | — | — | — "
                f"| not opened: {str(err).split('What to do')[0][:140]} |")
    open_s = time.perf_counter() - t0
    session = ort.InferenceSession(str(anon), providers=["CPUExecutionProvider"])
    batches = [x[i:i + 1] for i in range(len(x))] if fixed_batch else [x]  # a fixed batch: one at a time
    want = np.concatenate([session.run(None, {session.get_inputs()[0].name: b.numpy()})[0] for b in batches])
    with torch.no_grad():
        got = graph(x).numpy()
    diff = float(np.abs(got - want).max() / max(1e-12, float(np.abs(want).max())))
    names = prunable_parameters(graph, preset="all")
    major = sum(1 for n in names if n.rsplit(".", 1)[0] in graph.batch_layouts)
    path = "closed form" if supports_closed_form(graph, names) else "torch.func"
    anon.unlink()
    result = "opens"
    if re_export:
        result += ", " + _re_export(graph, names, x, folder / f"pruned_{name}.onnx")
    return (f"| {name} | {size} | {nodes} | {export_s:.1f} | {open_s:.2f} | {diff:.1e} | {major} / {len(names)} "
            f"| {path} | {result} |")


def _re_export(graph: torch.nn.Module, names: list[str], x: torch.Tensor, file: Path) -> str:
    """Half of every prunable weight set to 0 (the smallest), the graph exported by the app
    (traced on the 2 images of ``x``, verified in onnxruntime on 3 others) and run there on them."""
    with torch.no_grad():
        for n in names:
            w = graph.get_parameter(n)
            w.mul_(w.abs() > w.abs().flatten().kthvalue(max(1, w.numel() // 2)).values)
    other = torch.randn(3, *x.shape[1:], generator=torch.Generator().manual_seed(1))
    try:
        with open(os.devnull, "w") as quiet, redirect_stdout(quiet), redirect_stderr(quiet):
            report = export_onnx(graph, x, file, verify_batch=other)
    except StudioError as err:
        return f"re-export failed: {str(err).split('What to do')[0].split(': ', 1)[-1][:120]}"
    finally:
        file.unlink(missing_ok=True)
    return f"re-exported (max diff {report.max_abs_diff:.1e} at batch 3)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", help="comma-separated torchvision names (default: every classifier)")
    parser.add_argument("--exporter", choices=("app", "torchscript", "dynamo"),
                        help="app: the app's own export (default); torchscript or dynamo: torch.onnx.export "
                        "as a user calls it (dynamo is torch's default since 2.9)")
    parser.add_argument("--fixed-batch", action="store_true",
                        help="export as torch.onnx.export does without dynamic axes (batch fixed at 1; "
                        "TorchScript exporter unless --exporter dynamo); the imported graph runs 2 images at "
                        "once against onnxruntime's one at a time")
    parser.add_argument("--re-export", action="store_true",
                        help="also prune half of every weight (magnitude) and export the opened graph again, "
                        "verified in onnxruntime on a batch of 3 (the export traces 2)")
    args = parser.parse_args()
    exporter = args.exporter or ("torchscript" if args.fixed_batch else "app")
    if exporter == "app" and args.fixed_batch:
        parser.error("--fixed-batch needs --exporter torchscript or dynamo (the app's export leaves the batch open)")
    names = args.archs.split(",") if args.archs else torchvision.models.list_models(module=torchvision.models)
    folder = Path(tempfile.mkdtemp(prefix="onnx-zoo-"))
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, onnxruntime {ort.__version__}\n")
    print("| network | input | nodes | export s | open s | max diff vs onnxruntime (relative) "
          "| closed-form layers | G path | result |")
    print("| --- " * 9 + "|")
    opened = 0
    for name in names:
        line = row(name, folder, args.fixed_batch, exporter, args.re_export)
        opened += "| opens" in line
        print(line, flush=True)
        gc.collect()
    print(f"\n{opened} of {len(names)} networks open")


if __name__ == "__main__":
    main()
