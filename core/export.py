"""Atomic ONNX export, verified in onnxruntime before the file appears at its final path.

The model is exported from a deep copy in eval mode, serialised in memory and written to a hidden
temporary file in the destination folder. That file is checked (``onnx.checker``), run in
onnxruntime on a real batch and compared with PyTorch, and the zeros of every prunable weight are
counted in the graph; only then is it renamed onto the requested path. On any failure the temporary
file is removed and an existing file at the path is left as it was.

Exporter: the TorchScript-based exporter (``dynamo=False``) with constant folding off. It keeps the
parameters as initializers under their own names and values (BatchNorm stays a
``BatchNormalization`` node that onnxruntime fuses at load time), so zero counts are compared on
the very tensors that were pruned; it handles TorchScript models and takes a fraction of a second
for ResNet20. Models it cannot trace (e.g. modules from ``torch.export``) fall back to the
``torch.export``-based exporter (``dynamo=True``).

Sparse storage (``sparse=True``, off by default): every floating-point initializer whose nonzeros
take less room as values plus int64 positions than the dense tensor (fewer than a third of its
elements nonzero for float32) is moved to the graph's ``sparse_initializer`` list, an ONNX
``SparseTensorProto`` with linear indices, the only index type the ONNX checker accepts. The values
are the same bits; onnxruntime turns such tensors back into dense ones when it loads the file, so
inference is unchanged and only the file shrinks. Runtimes other than onnxruntime may not read
sparse initializers, so dense storage stays the default.

Float16 weights (``float16=True``, off by default; :func:`float16_storage`): every float32 weight
tensor (two or more dimensions, at least ``FLOAT16_MIN_ELEMENTS`` elements) is stored in float16
and read through a ``Cast`` to float32 under its own name. The file is about half the size; the
graph still computes in float32 (onnxruntime folds the Casts when it loads the file), so the only
change is each weight rounded to float16's 11 significant bits. The export is verified against
PyTorch within ``MAX_DIFF_FLOAT16`` and, with ``evaluation``, scored in onnxruntime.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import math
import os
import stat
import tempfile
import time
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

import numpy as np
import torch

from core.errors import StudioError
from core.evaluate import EvalResult, evaluate, paired_difference, set_eval_mode
from core.onnx_import import CHANNELS_LAST, OnnxGraphModule, sort_nodes
from core.progress import CancelToken, ProgressFn, check, report
from core.prunable import prunable_parameters
from core.sparsity_pattern import held_patterns

if TYPE_CHECKING:
    from core.data import ImageSet

MAX_DIFF = 1e-3
"""Largest tolerated |onnxruntime − PyTorch| on any output element, for outputs up to 1 in size;
larger outputs are allowed MAX_DIFF times their largest |value| (float32 rounding grows with it)."""
MAX_DIFF_FLOAT16 = 3e-2
"""MAX_DIFF for a float16 file (weights and arithmetic in float16) against PyTorch's float32."""

FLOAT16_MIN_ELEMENTS = 64
"""Float16 storage converts weight tensors of at least this many elements (below it, the Cast
node takes about the room the float16 halves save)."""
FLOAT16_MAX = 65504.0  # the largest finite float16

MAX_VERIFY_BATCH = 256
"""At most this many images of ``verify_batch`` are run in onnxruntime."""

_PROTOBUF_LIMIT = 2**31 - 2**24  # 2 GiB protobuf limit, less room for the graph itself
MIN_OPSET = 7  # the oldest opset the TorchScript exporter writes
_INPUT_NAME = "input"
_OUTPUT_NAME = "output"
# zlib's, gzip's and zip's default: what a download of the file would be compressed with. Level 9
# is 1-2% smaller and 6-7x slower (42.8 s against 6.4 s on a 106 MiB ConvNeXt-T file, which every
# run's preview paid; benchmarks/compression_level.py).
DEFLATE_LEVEL = 6

SPARSE_INDEX_BYTES = 8
"""Bytes per stored position in a sparse initializer (int64, the type the ONNX checker requires)."""


@dataclass(frozen=True)
class ExportReport:
    """What was written and how it was verified.

    ``zero_fractions`` maps each prunable weight to (fraction of zeros in PyTorch, in the ONNX
    file); they are equal, or the export fails. ``compressed_bytes`` is the deflate (zlib level
    ``DEFLATE_LEVEL``, 6) size of the file: the honest download size of unstructured-sparse weights.
    """

    path: str
    onnx_bytes: int
    compressed_bytes: int
    max_abs_diff: float
    zero_fractions: dict[str, tuple[float, float]]
    opset: int
    seconds: float
    exporter: str = "torchscript"
    verify_batch_size: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    sparse: bool = False
    """Whether the file stores its sparse weights as ONNX sparse initializers."""
    sparse_tensors: int = 0
    """How many initializers the file stores sparsely (0 with dense storage)."""
    onnx_eval: EvalResult | None = None
    """The written file's accuracy in onnxruntime on ``export_onnx(evaluation=)``'s images."""
    reference_eval: EvalResult | None = None
    """PyTorch's on the same images (the caller's ``reference``, or measured by the export)."""
    interface: str = ""
    """The written graph's input and outputs, e.g. "input `image` batch×8×8×1 → `output_0`"."""
    float16: bool = False
    """Whether float16 storage was asked for (``export_onnx(float16=True)``, or the source file
    stored its weights so)."""
    float16_tensors: int = 0
    """How many weight tensors the file stores in float16 behind a Cast (float16 storage)."""
    patterns: dict[str, list[str]] = field(default_factory=dict)
    """The N:M patterns (1:4, 2:4, 4:8) every block of the file's prunable weights keeps, read
    from the written file (:func:`core.sparsity_pattern.held_patterns`): pattern → the weights
    without blocks of M."""

    @property
    def scored_differently(self) -> int | None:
        """Evaluation images that onnxruntime and PyTorch do not both get right or both get
        wrong (None without an evaluation)."""
        if self.onnx_eval is None or self.reference_eval is None:
            return None
        pair = paired_difference(self.onnx_eval, self.reference_eval)
        return pair.a_only + pair.b_only


class OnnxSizes(NamedTuple):
    """Sizes of the ``.onnx`` file :func:`export_onnx` would write, in bytes."""

    onnx_bytes: int
    """The file with dense storage (the default)."""
    compressed_bytes: int
    """That file deflated (zlib level ``DEFLATE_LEVEL``)."""
    sparse_bytes: int
    """The file with sparse storage (``export_onnx(sparse=True)``)."""
    sparse_compressed_bytes: int | None
    """That file deflated; None where not measured (``onnx_sizes(sparse_deflate=False)``)."""


# ---------------------------------------------------------------------------------------------
# public API


def pruned_file_name(source: str, method: str, sparsity: float) -> str:
    """'mlpnet_mnist_chitapp_90.onnx': the file name a pruned model is offered under: the
    model's file stem (or demo name), the method ('+' as 'p') and the sparsity in percent, with
    decimals only where needed ('87p5')."""
    stem = Path(str(source)).stem.split(":")[-1] or "model"
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)
    pct = f"{100 * sparsity:.4f}".rstrip("0").rstrip(".").replace(".", "p")
    return f"{stem}_{method.replace('+', 'p')}_{pct}.onnx"


def export_onnx(
    model: torch.nn.Module,
    sample: torch.Tensor,
    path: str | os.PathLike,
    *,
    verify_batch: torch.Tensor | None = None,
    opset: int | None = None,
    sparse: bool = False,
    float16: bool = False,
    evaluation: ImageSet | None = None,
    reference: EvalResult | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> ExportReport:
    """Export ``model`` to ONNX at ``path`` atomically, verified in onnxruntime.

    ``sample`` is an example input batch ``(N, *input_shape)``; the batch dimension is exported as
    dynamic. ``verify_batch`` (default: ``sample``) is run in onnxruntime and compared with
    PyTorch. ``sparse`` stores the weights that are mostly zeros as ONNX sparse initializers
    (smaller file, the same values; see the module docstring). ``float16`` stores the weights in
    float16 behind Casts to float32 (:func:`float16_storage`: about half the file; the outputs are
    then checked within ``MAX_DIFF_FLOAT16``). ``evaluation`` (labelled images):
    the file is also scored on them in onnxruntime (``report.onnx_eval``) beside PyTorch
    (``reference``, the pruned model's EvalResult on those images if the caller has it, else
    measured here), before it appears at ``path``. The caller's model is never modified. Stages
    ``"export"``, ``"verify"`` and, with ``evaluation``, ``"accuracy in onnxruntime"`` are
    reported; ``Cancelled`` is raised between steps and leaves nothing behind. Raises
    :class:`StudioError` if the folder is missing or not writable, the model cannot be exported,
    the outputs differ by more than ``MAX_DIFF`` (relative to outputs over 1) or a weight's zero count changed.
    """
    start = time.perf_counter()
    target = os.path.abspath(os.fspath(path))
    check_destination(target)  # before any work: a folder that cannot take the file fails at once
    work = _eval_copy(model)
    to_file = _as_source_file(work)
    sample = sample.detach().cpu()
    batch = to_file((sample if verify_batch is None else verify_batch.detach().cpu())[:MAX_VERIFY_BATCH])
    sample = to_file(sample)
    if evaluation is not None:
        evaluation = dataclasses.replace(evaluation, x=to_file(evaluation.x))

    check(cancel)
    report(progress, "export", 0, 1, "converting to ONNX")
    data, exporter = _export_bytes(work, sample, opset)
    if getattr(work, "export_open_dims", ()) and not _open_sizes_agree(data, work, batch, target):
        work.export_open_dims = ()  # the pruned graph does not run at other sizes: written at this one
        data, exporter = _export_bytes(work, sample, opset)
    float16 = float16 or bool(getattr(work, "export_float16_storage", False))
    float16_tensors = 0
    if float16:
        data, float16_tensors = float16_storage(data, target)
    sparse_tensors = 0
    if sparse:
        data, sparse_tensors = sparse_storage(data)
    t_export = time.perf_counter() - start
    report(progress, "export", 1, 1)
    check(cancel)

    found: dict[str, Any] = {}

    def verify(tmp: str) -> None:
        """The written file checked, run in onnxruntime, its zeros counted (and scored)."""
        report(progress, "verify", 0, 3, "checking the graph")
        t0 = time.perf_counter()
        with open(tmp, "rb") as f:
            found["written"] = written = f.read()
        found["opset"], found["interface"] = _check_graph(written, target)
        check(cancel)
        report(progress, "verify", 1, 3, "running in onnxruntime")
        found["max_diff"] = _compare_outputs(tmp, work, batch, target, float16=float16_tensors > 0)
        check(cancel)
        report(progress, "verify", 2, 3, "counting zeros")
        arrays: dict[str, np.ndarray] = {}
        found["fractions"] = _compare_zeros(work, written, target, arrays)
        with warnings.catch_warnings():  # the file's arrays are read-only; they are only read here
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            found["patterns"] = held_patterns({k: torch.from_numpy(np.ascontiguousarray(a))
                                               for k, a in arrays.items()})
        found["compressed"] = len(zlib.compress(written, DEFLATE_LEVEL))
        found["onnx_eval"], found["reference"] = None, reference
        if evaluation is not None:
            found["onnx_eval"], found["reference"] = _score(tmp, work, evaluation, reference, target, progress, cancel)
        found["t_verify"] = time.perf_counter() - t0
        check(cancel)

    write_verified(target, data, verify, what="the ONNX file")
    written, compressed, max_diff = found["written"], found["compressed"], found["max_diff"]
    fractions, opset_used, interface = found["fractions"], found["opset"], found["interface"]
    onnx_eval, reference, t_verify = found["onnx_eval"], found["reference"], found["t_verify"]
    report(progress, "verify", 3, 3)
    return ExportReport(
        path=target,
        onnx_bytes=len(written),
        compressed_bytes=compressed,
        max_abs_diff=max_diff,
        zero_fractions=fractions,
        opset=opset_used,
        interface=interface,
        seconds=time.perf_counter() - start,
        exporter=exporter,
        verify_batch_size=int(batch.shape[0]),
        timings={"export": t_export, "verify": t_verify},
        sparse=sparse,
        sparse_tensors=sparse_tensors,
        float16=float16,
        float16_tensors=float16_tensors,
        patterns=found["patterns"],
        onnx_eval=onnx_eval,
        reference_eval=reference if evaluation is not None else None,
    )


def onnx_sizes(model: torch.nn.Module, sample: torch.Tensor, *, sparse_deflate: bool = True,
               float16: bool = False) -> OnnxSizes:
    """Sizes of the file :func:`export_onnx` would write, with dense and with sparse storage,
    each as written and deflated; ``float16``: with its float16 weights (``export_onnx(float16=)``).

    The graph is serialised in memory with the same exporter and settings, so nothing is written
    to disk; no onnxruntime verification is run (use it for previews). Deflating the sparse-storage
    file costs about as much again as deflating the dense one (3.2 s against 2.2 s on a 106 MiB
    ConvNeXt-T at 90%, ``benchmarks/sparse_storage.py``), so ``sparse_deflate=False`` skips it and
    leaves it None. Where no tensor changes storage it equals the dense file's, and is always given.
    """
    work = _eval_copy(model)
    data = _serialised(work, sample)
    float16 = float16 or bool(getattr(work, "export_float16_storage", False))
    if float16:
        data, _ = float16_storage(data, "the ONNX file")
    compressed = len(zlib.compress(data, DEFLATE_LEVEL))
    sparse, moved = sparse_storage(data)
    sparse_compressed = (compressed if not moved else
                         len(zlib.compress(sparse, DEFLATE_LEVEL)) if sparse_deflate else None)
    return OnnxSizes(len(data), compressed, len(sparse), sparse_compressed)


def onnx_model_bytes(model: torch.nn.Module, sample: torch.Tensor) -> bytes:
    """The ONNX file :func:`export_onnx` would write for ``model`` (dense storage, float32 weights),
    serialised in memory and not verified: e.g. the dense model to time beside a pruned file
    (:func:`core.latency.measure_latency`). ``model`` is never modified."""
    return _serialised(_eval_copy(model), sample)


def _serialised(work: torch.nn.Module, sample: torch.Tensor) -> bytes:
    """The export of ``work`` (the export's own eval copy) as bytes."""
    data, _ = _export_bytes(work, _as_source_file(work)(sample.detach().cpu()), None)
    return data


FLOAT16_SUFFIX = "__float16"  # the float16 initializer of weight NAME is NAME__float16


def float16_storage(data: bytes, target: str = "the ONNX file") -> tuple[bytes, int]:
    """Store the float32 weights of a serialised ONNX model in float16; return (new bytes, how
    many tensors were converted).

    Each float32 initializer of two or more dimensions and at least ``FLOAT16_MIN_ELEMENTS``
    elements (the weights of Conv, Gemm, MatMul; not biases or BatchNorm's statistics), not a
    graph input, becomes a float16 initializer ``NAME__float16`` read by a ``Cast`` to float32
    whose output keeps the name ``NAME``: every node reads what it read before, in float32, and
    onnxruntime folds the Casts at load. Rounding keeps the zeros and only them: a nonzero below
    float16's smallest magnitude is stored as that (``FLOAT16_TINY``) with its sign. A weight
    beyond float16's range (``FLOAT16_MAX``) is refused (``StudioError`` naming it and ``target``).
    """
    import onnx
    from onnx import helper, numpy_helper

    proto = onnx.load_from_string(data)
    graph = proto.graph
    inputs = {i.name for i in graph.input}
    taken = {t.name for t in graph.initializer} | {o for n in graph.node for o in n.output} | inputs
    casts = []
    for init in graph.initializer:
        if (init.data_type != onnx.TensorProto.FLOAT or init.data_location != 0 or init.name in inputs
                or len(init.dims) < 2 or math.prod(init.dims) < FLOAT16_MIN_ELEMENTS):
            continue
        values = numpy_helper.to_array(init)
        finite = np.abs(values[np.isfinite(values)])
        if finite.size and float(finite.max()) > FLOAT16_MAX:
            raise StudioError(
                f"weight '{init.name}' holds {float(finite.max()):.4g}, beyond float16's largest value "
                f"{FLOAT16_MAX:g}; nothing was saved", path=target, field="float16",
                fix="export with float32 weights (leave float16 weights off)")
        with np.errstate(over="ignore"):
            half = values.astype(np.float16)
        lost = (half == 0) & (values != 0)
        half[lost] = np.copysign(FLOAT16_TINY, values[lost]).astype(np.float16)
        name, stored = init.name, init.name + FLOAT16_SUFFIX
        while stored in taken:
            stored += "_"
        taken.add(stored)
        init.CopyFrom(numpy_helper.from_array(half, name=stored))
        casts.append(helper.make_node("Cast", [stored], [name], name=f"{stored}_to_float32",
                                      to=onnx.TensorProto.FLOAT))
    if not casts:
        return data, 0
    nodes = [*casts, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    return proto.SerializeToString(), len(casts)


def sparse_storage(data: bytes) -> tuple[bytes, int]:
    """Move the initializers of a serialised ONNX model that are smaller stored sparsely into
    ``graph.sparse_initializer``; return (new bytes, how many were moved).

    A tensor of N elements with z nonzeros, b bytes each, is moved when z·(b + 8) < N·b: the
    values of its nonzeros (a tensor of the initializer's name and type) and their int64 linear
    positions (named ``NAME__indices``) replace it, with the dense shape. Only top-level
    initializers of a floating-point type that are not also graph inputs are considered. Values
    are copied bit for bit; ``-0.0`` counts as zero and comes back as ``0.0``.
    """
    import onnx

    proto = onnx.load_from_string(data)
    graph = proto.graph
    inputs = {i.name for i in graph.input}
    keep: list[onnx.TensorProto] = []
    moved: list[onnx.SparseTensorProto] = []
    for init in graph.initializer:
        sparse = None if init.name in inputs else _as_sparse(init)
        if sparse is None:
            keep.append(init)
        else:
            moved.append(sparse)
    if not moved:
        return data, 0
    del graph.initializer[:]
    graph.initializer.extend(keep)
    graph.sparse_initializer.extend(moved)
    return proto.SerializeToString(), len(moved)


_FLOAT_TYPES = (1, 10, 11)  # TensorProto FLOAT, FLOAT16, DOUBLE


def _as_sparse(init: object) -> object | None:
    """``init`` (a TensorProto) as a SparseTensorProto with linear int64 indices, or None when
    that would not be smaller or the tensor is not floating point."""
    from onnx import helper, numpy_helper

    if init.data_type not in _FLOAT_TYPES or init.data_location != 0:  # 0: stored in the file
        return None
    values = numpy_helper.to_array(init)
    if values.size == 0:
        return None
    flat = values.reshape(-1)
    where = np.flatnonzero(flat)
    item = flat.dtype.itemsize
    if where.size * (item + SPARSE_INDEX_BYTES) >= flat.size * item:
        return None
    kept = numpy_helper.from_array(np.ascontiguousarray(flat[where]), name=init.name)
    indices = numpy_helper.from_array(where.astype(np.int64), name=f"{init.name}__indices")
    return helper.make_sparse_tensor(kept, indices, list(init.dims))


def describe_storage(report: ExportReport) -> str:
    """How an export stores its weights, in a sentence for the CLI and the app."""
    if not report.sparse:
        text = "dense (every weight written out, zeros included)"
    elif not report.sparse_tensors:
        text = ("dense: sparse storage was asked for, but no weight tensor has fewer than a third "
                "nonzeros, where it would make the file smaller")
    else:
        text = (f"sparse: {report.sparse_tensors} weight tensors as ONNX sparse initializers "
                "(ONNX Runtime reads them; other runtimes may not)")
    if report.float16_tensors:
        text += (f"; {report.float16_tensors} weight tensors in float16, each read through a Cast to "
                 "float32 (computed in float32)")
    elif report.float16:
        text += ("; float16 weights were asked for, but no weight tensor was left to convert (none in "
                 "float32 with two or more dimensions and at least 64 elements)")
    held = getattr(report, "patterns", None) or {}
    if held:  # the sparsest pattern held (1:4 implies 2:4 implies 4:8)
        pattern, without = next(iter(held.items()))
        n, m = pattern.split(":")
        text += (f"; {pattern} sparsity: every block of {m} inputs keeps at most {n} nonzeros, read back "
                 "from the file" + (f" ({', '.join(without[:3])}{', …' if len(without) > 3 else ''} "
                                     f"{'has' if len(without) == 1 else 'have'} no such blocks)" if without else ""))
    return text


def describe_onnx_accuracy(report: ExportReport) -> str | None:
    """'94.00% on 10,000 evaluation images in onnxruntime (PyTorch 94.00%; no image scored
    differently)', or None where the export scored no images."""
    ev, ref, diff = report.onnx_eval, report.reference_eval, report.scored_differently
    if ev is None or ref is None:
        return None
    same = "no image scored differently" if diff == 0 else f"{diff:,} image{'s' if diff != 1 else ''} scored differently"
    return (f"{100 * ev.accuracy:.2f}% on {ev.n:,} evaluation images in onnxruntime "
            f"(PyTorch {100 * ref.accuracy:.2f}%; {same})")


def human_bytes(n: float) -> str:
    """``1234567`` → ``'1.18 MiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"  # unreachable


# ---------------------------------------------------------------------------------------------
# export


def _eval_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A CPU deep copy of ``model`` in eval mode; the caller's model is never touched."""
    with warnings.catch_warnings():  # copying/moving a TorchScript module warns about .grad
        warnings.simplefilter("ignore")
        try:
            work = copy.deepcopy(model).cpu()
        except Exception as err:  # noqa: BLE001 - any copy failure is reported the same way
            raise StudioError(
                f"the model could not be copied for export ({type(err).__name__}: {_first_line(err)})",
                fix="load the model from a state_dict with a known architecture and export again",
            ) from None
    set_eval_mode(work)
    return work


def _as_source_file(work: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """Make ``work`` (the export's own copy) the file it came from, and return what turns the
    app's images into that file's input. An ONNX graph opened in the app returns every output its
    source had. One opened from a channels-last file (its module permutes N×C×H×W images itself)
    is exported N×H×W×C in: ``work`` stops permuting, and the images given to it and to
    onnxruntime are permuted here instead."""
    if isinstance(work, OnnxGraphModule):
        work.all_outputs = True  # every output of the source file, not only the class scores
        work.export_open_dims = work.open_input_dims  # its open sizes (export_onnx checks them)
        work.export_float16 = work.float16_io or work.float16_weights  # written in float16 again
        work.export_float16_storage = work.float16_storage  # float16 weights read as float32 again
    perm = getattr(work, "input_permutation", None)
    if perm is None:
        return lambda x: x
    work.input_permutation = None
    return lambda x: x.permute(*perm).contiguous()


def _open_sizes_agree(data: bytes, work: torch.nn.Module, batch: torch.Tensor, target: str) -> bool:
    """Whether the graph exported with the source file's open input sizes (``work.export_open_dims``)
    gives PyTorch's outputs at other sizes too (each open size × 1.25, at least + 1): where it
    does not (a size fixed by a Flatten, position embeddings) the file is written at the data's."""
    shape = list(batch.shape)
    for d in work.export_open_dims:
        shape[d] = max(shape[d] + 1, math.ceil(shape[d] * 1.25))
    x = torch.randn(min(2, shape[0]), *shape[1:], generator=torch.Generator().manual_seed(0))
    x = x * batch.std() + batch.mean()
    try:
        _compare_outputs(data, work, x, target)
    except Exception:  # noqa: BLE001 - any failure at another size means: not open
        return False
    return True


def _check_size(model: torch.nn.Module) -> None:
    total = sum(t.numel() * t.element_size() for t in model.state_dict().values() if isinstance(t, torch.Tensor))
    if total > _PROTOBUF_LIMIT:
        raise StudioError(
            f"the model has {human_bytes(total)} of weights; a single .onnx file holds at most 2 GiB "
            "and larger models need an external-data file beside it, which this export does not write",
            fix="export a smaller model, or export it from Python with torch.onnx.export(..., external_data=True)",
        )


def _io_names(model: torch.nn.Module) -> tuple[str, list[str]]:
    """The graph's input name and output names: an ONNX file opened in the app
    (``core.onnx_import``) keeps its own, every output of it included, so that the pruned file
    replaces it in code that feeds it and reads it by name."""
    if isinstance(model, OnnxGraphModule) and model.input_name != model.output_name:
        extra = list(model.extra_outputs) if model.all_outputs else []
        return model.input_name, [model.output_name, *extra]
    return _INPUT_NAME, [_OUTPUT_NAME]


def _like_source(data: bytes, model: torch.nn.Module) -> bytes:
    """``data`` as the ONNX file ``model`` was opened from had it: with that file's metadata_props,
    and in float16 where that file was (:func:`_as_float16`)."""
    props = getattr(model, "metadata_props", None) if isinstance(model, OnnxGraphModule) else None
    half = isinstance(model, OnnxGraphModule) and getattr(model, "export_float16", False)
    if not props and not half:
        return data
    import onnx

    proto = onnx.load_from_string(data)
    if props:
        onnx.helper.set_model_props(proto, {**{p.key: p.value for p in proto.metadata_props}, **props})
    if half:
        proto = _as_float16(proto, keep_io=not model.float16_io)
    return proto.SerializeToString()


FLOAT16_TINY = np.float16(2.0 ** -24)  # the smallest positive float16 (subnormal)


def _as_float16(proto: Any, *, keep_io: bool) -> Any:
    """An exported float32 graph in float16, as the file it came from was: float weights,
    constants and arithmetic, and with ``keep_io`` float32 inputs and outputs, Cast to and from
    float16 inside (a mixed-precision file); else float16 inputs and outputs too.

    onnxruntime's own converter (``onnxruntime.transformers.float16``, the one of
    onnxconverter-common) does it: it keeps float32 where an operator requires it (Resize's
    scales) or lacks float16 kernels (TopK), with Casts around such nodes. A nonzero weight too
    small for float16 is stored as its smallest value of that sign (``FLOAT16_TINY``), so the
    mask survives."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    proto = convert_float_to_float16(proto, min_positive_val=float(FLOAT16_TINY), keep_io_types=keep_io)
    sort_nodes(proto.graph)  # the converter appends its input Casts after the nodes that read them
    return proto


def _export_bytes(model: torch.nn.Module, sample: torch.Tensor, opset: int | None) -> tuple[bytes, str]:
    """Serialise ``model`` (already an eval copy) to ONNX bytes; returns (bytes, exporter name).
    An ONNX graph opened in the app is written at its source file's opset when none is asked for
    and the TorchScript exporter can (else at the exporter's default, as any other network)."""
    _check_size(model)
    source = getattr(model, "source_opset", None) if isinstance(model, OnnxGraphModule) else None
    if opset is None and source:
        try:
            return _like_source(_export_torchscript(model, sample, max(source, MIN_OPSET)), model), "torchscript"
        except Exception:  # noqa: BLE001 - an operator this opset lacks: the default below
            pass
    try:
        data, exporter = _export_torchscript(model, sample, opset), "torchscript"
    except Exception as first:  # noqa: BLE001 - the exporters raise many types
        try:
            data, exporter = _export_dynamo(model, sample, opset), "dynamo"
        except Exception as second:  # noqa: BLE001
            raise StudioError(
                "the model could not be converted to ONNX. TorchScript exporter: "
                f"{_first_line(first)}. torch.export exporter: {_first_line(second)}",
                fix="models with data-dependent control flow or custom operators need changes to their "
                "forward() before they can be exported; a model loaded from a state_dict with a known "
                "architecture always exports",
            ) from None
    return _like_source(data, model), exporter


def _export_torchscript(model: torch.nn.Module, sample: torch.Tensor, opset: int | None) -> bytes:
    in_name, out_names = _io_names(model)
    open_dims = getattr(model, "export_open_dims", ()) if isinstance(model, OnnxGraphModule) else ()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (sample,),
            buf,
            dynamo=False,
            export_params=True,
            do_constant_folding=False,  # keep every weight as its own, unchanged initializer
            opset_version=opset,
            input_names=[in_name],
            output_names=out_names,
            dynamic_axes={in_name: {0: "batch", **{d: f"size_{d}" for d in open_dims}},
                          **{name: {0: "batch"} for name in out_names}},
        )
    return buf.getvalue()


def _export_dynamo(model: torch.nn.Module, sample: torch.Tensor, opset: int | None) -> bytes:
    in_name, out_names = _io_names(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (sample,),
            dynamo=True,
            verbose=False,
            optimize=True,
            opset_version=opset,
            input_names=[in_name],
            output_names=out_names,
            dynamic_shapes=({0: torch.export.Dim.AUTO},),
        )
    try:
        return program.model_proto.SerializeToString()
    except ValueError as err:  # protobuf refuses messages over 2 GiB
        raise StudioError(
            f"the ONNX graph is too large for a single file ({_first_line(err)})",
            fix="export a smaller model",
        ) from None


# ---------------------------------------------------------------------------------------------
# files


def check_destination(target: str, *, what: str = "the ONNX file", example: str = "model.onnx",
                      field: str | None = None) -> str:
    """Return the folder ``target`` (a file about to be written: ``what``) goes in, or raise a
    StudioError saying what is wrong with it (a folder, a missing folder, one not writable),
    naming ``field`` (e.g. a CLI option) where given."""
    folder = os.path.dirname(target)
    if os.path.isdir(target):
        raise StudioError(
            "this is a folder, not a file name",
            path=target,
            field=field,
            fix=f"give a file name such as {example} inside the folder",
        )
    if not os.path.isdir(folder):
        raise StudioError(
            f"the folder to save {what} in does not exist",
            path=folder,
            field=field,
            fix="create the folder first, or choose an existing folder",
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StudioError(
            f"the folder is not writable, so {what} cannot be saved there",
            path=folder,
            field=field,
            fix="choose a folder you can write to, or change its permissions",
        )
    return folder


def write_verified(target: str, data: bytes, verify: Callable[[str], None], *, what: str = "the file") -> None:
    """Write ``data`` to ``target`` atomically: a hidden temporary file in its folder, which
    ``verify(path)`` checks (raising on a fault), then a rename onto ``target``. On any failure
    the temporary file is removed and an existing ``target`` is left as it was. ``what`` names
    the file in errors ("the weights file")."""
    tmp = _write_temp(check_destination(target, what=what), os.path.basename(target), data, what=what)
    try:
        verify(tmp)
        _finalise(tmp, target)
    except BaseException:
        _remove(tmp)
        raise


def _write_temp(folder: str, base: str, data: bytes, what: str = "the ONNX file") -> str:
    """Write ``data`` to a hidden, uniquely named file in ``folder``; return its path."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".partial", dir=folder)
    except OSError as err:
        raise StudioError(
            f"cannot create a file in this folder ({err.strerror})",
            path=folder,
            fix="choose a folder you can write to",
        ) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as err:
        _remove(tmp)
        if isinstance(err, OSError):
            raise StudioError(
                f"writing {what} failed ({err.strerror})",
                path=folder,
                fix="free some disk space or choose another folder",
            ) from None
        raise
    return tmp


def _finalise(tmp: str, target: str) -> None:
    """Give ``tmp`` the permissions a new (or the existing) file would have, rename it onto ``target``."""
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode) if os.path.exists(target) else 0o666 & ~_umask()
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except OSError as err:
        raise StudioError(
            f"cannot replace the file ({err.strerror}); the existing file was left unchanged",
            path=target,
            fix="close any program that has the file open, or choose another file name",
        ) from None


def _umask() -> int:
    """The process umask, read without changing it (Linux); 0o022 elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


# ---------------------------------------------------------------------------------------------
# verification


def _check_graph(data: bytes, target: str) -> tuple[int, str]:
    """Run the ONNX checker on the serialised model; return its default-domain opset and its
    input and outputs in words (:attr:`ExportReport.interface`)."""
    import onnx

    try:
        proto = onnx.load_from_string(data)
        onnx.checker.check_model(proto)
    except Exception as err:  # noqa: BLE001
        raise StudioError(
            f"the exported graph is not valid ONNX ({_first_line(err)}); nothing was saved",
            path=target,
            fix="report this model to the developers; try another opset",
        ) from None
    opset = next((int(e.version) for e in proto.opset_import if e.domain in ("", "ai.onnx")), 0)
    graph = proto.graph
    dims = "×".join(str(d.dim_value or d.dim_param or "?") for d in graph.input[0].type.tensor_type.shape.dim)
    half = " float16" if graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16 else ""
    weights = [*graph.initializer, *(s.values for s in graph.sparse_initializer)]
    inside = not half and any(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)
    interface = (f"input `{graph.input[0].name}` {dims}{half} → "
                 + ", ".join(f"`{o.name}`" for o in graph.output) + ("; float16 weights" if inside else ""))
    return opset, interface


class OnnxRuntimeModel(torch.nn.Module):
    """An ONNX file run by onnxruntime on the CPU, called like a PyTorch classifier: float32
    images in, the first output (class scores) out, as a tensor. No gradients. A file that takes
    channels-last images (N×H×W×C) is given N×C×H×W batches permuted, where only they fit it; one
    that fixes its batch size is given that many images at a time."""

    def __init__(self, path: str | os.PathLike | bytes) -> None:
        """``path``: the file, or the serialised model (bytes)."""
        import onnxruntime as ort

        super().__init__()
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.input_dims = list(self.session.get_inputs()[0].shape)  # ints where fixed, names where open
        self.half = self.session.get_inputs()[0].type == "tensor(float16)"

    def _fits(self, shape: torch.Size) -> bool:
        return len(shape) == len(self.input_dims) and all(
            not isinstance(d, int) or d <= 0 or d == s for d, s in zip(self.input_dims[1:], shape[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().cpu().float()
        if x.ndim == 4 and not self._fits(x.shape) and self._fits(x.permute(*CHANNELS_LAST).shape):
            x = x.permute(*CHANNELS_LAST)
        x = np.ascontiguousarray(x.numpy()).astype(np.float16 if self.half else np.float32, copy=False)
        batch = self.input_dims[0] if isinstance(self.input_dims[0], int) and self.input_dims[0] > 0 else None
        if batch is None:  # an open batch: all at once
            out = self.session.run(None, {self.input_name: x})[0]
        else:  # a file that fixes its batch: that many at a time, the last group padded with zeros
            n = len(x)
            x = np.concatenate([x, np.zeros((-n % batch, *x.shape[1:]), dtype=x.dtype)])
            out = np.concatenate([self.session.run(None, {self.input_name: x[i:i + batch]})[0]
                                  for i in range(0, len(x), batch)])[:n]
        return torch.from_numpy(np.asarray(out, dtype=np.float32))


def evaluate_onnx(path: str | os.PathLike, images: ImageSet, *, progress: ProgressFn | None = None,
                  cancel: CancelToken | None = None) -> EvalResult:
    """Top-1 accuracy (95% interval) and loss of an ONNX classifier file in onnxruntime on
    ``images``, exactly as :func:`core.evaluate.evaluate` scores a PyTorch model (``hits`` per
    image included, for paired comparisons). Stage ``"evaluate"``."""
    return evaluate(OnnxRuntimeModel(path), images, progress=progress, cancel=cancel)


def _score(tmp: str, work: torch.nn.Module, images: ImageSet, reference: EvalResult | None, target: str,
           progress: ProgressFn | None, cancel: CancelToken | None) -> tuple[EvalResult, EvalResult]:
    """The written file's and PyTorch's EvalResults on ``images`` (``reference`` if given)."""
    stage = "accuracy in onnxruntime"

    def renamed(p: object) -> None:
        report(progress, stage, p.done, p.total, p.message)

    if reference is not None and reference.n != int(images.y.shape[0]):
        raise StudioError(
            f"the reference accuracy was measured on {reference.n} images, not on the {int(images.y.shape[0])} "
            "given to score the file; nothing was saved",
            path=target,
            fix="pass the pruned model's EvalResult on the same evaluation images, or none",
        )
    try:
        onnx_eval = evaluate_onnx(tmp, images, progress=renamed if progress else None, cancel=cancel)
    except StudioError as err:
        raise StudioError(f"onnxruntime could not score the exported file on the evaluation images "
                          f"({err.message}); nothing was saved", path=target, fix=err.fix) from None
    if reference is None:
        reference = evaluate(work, images, cancel=cancel)
    return onnx_eval, reference


def _flat_outputs(output: object) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in _flat_outputs(item)]
    return []


def _compare_outputs(onnx_path: str | bytes, model: torch.nn.Module, batch: torch.Tensor, target: str,
                     *, float16: bool = False) -> float:
    """Run the file (a path, or its bytes) in onnxruntime and PyTorch on ``batch``; return max
    |difference| (``float16``: the file stores float16 weights, so ``MAX_DIFF_FLOAT16`` applies)."""
    import onnxruntime as ort

    try:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        input_name = session.get_inputs()[0].name
        half = session.get_inputs()[0].type == "tensor(float16)"  # float16 in and out (_as_float16)
        got = session.run(None, {input_name: batch.numpy().astype(np.float16) if half else batch.numpy()})
    except Exception as err:  # noqa: BLE001
        raise StudioError(
            f"onnxruntime could not run the exported graph on a batch of shape {tuple(batch.shape)} "
            f"({_first_line(err)}); nothing was saved",
            path=target,
            fix="the model may not support a variable batch size; check its forward()",
        ) from None
    with torch.inference_mode():
        expected = [t.detach().float().cpu().numpy() for t in _flat_outputs(model(batch))]
    if len(expected) != len(got) or any(e.shape != g.shape for e, g in zip(expected, got)):
        raise StudioError(
            f"the ONNX graph returns outputs of shapes {[g.shape for g in got]}, PyTorch "
            f"{[e.shape for e in expected]}; nothing was saved",
            path=target,
            fix="the model may not support a variable batch size; check its forward()",
        )
    max_diff, scale = 0.0, 1.0
    for e, g in zip(expected, got):
        g = g.astype(np.float32, copy=False)
        both_nan = np.isnan(e) & np.isnan(g)
        diff = np.where(both_nan, 0.0, np.abs(e - g))
        worst = float(np.max(diff)) if diff.size else 0.0
        if np.isnan(worst):
            worst = float("inf")
        max_diff = max(max_diff, worst)
        finite = np.abs(e[np.isfinite(e)])
        scale = max(scale, float(finite.max()) if finite.size else 0.0)
    tolerance = MAX_DIFF_FLOAT16 if half or float16 or getattr(model, "export_float16", False) else MAX_DIFF
    if max_diff > tolerance * scale:
        raise StudioError(
            f"the ONNX graph's outputs differ from PyTorch's by up to {max_diff:.3g} "
            f"(tolerance {tolerance * scale:.3g}"
            + (f", {tolerance:g} × the largest output {scale:.3g}" if scale > 1 else "") + "); nothing was saved",
            path=target,
            fix="report this model to the developers; try another opset",
        )
    return max_diff


def _onnx_tensors(data: bytes) -> dict[str, np.ndarray]:
    """Initializers (sparse ones made dense) and Constant-node tensors of the model, by name."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load_from_string(data)
    tensors = {init.name: numpy_helper.to_array(init) for init in proto.graph.initializer}
    for sparse in proto.graph.sparse_initializer:
        tensors[sparse.values.name] = dense_array(sparse)
    for node in proto.graph.node:
        if node.op_type == "Cast" and node.input and node.input[0] in tensors:  # float16 storage
            tensors.setdefault(node.output[0], tensors[node.input[0]])
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                    tensors.setdefault(node.output[0], numpy_helper.to_array(attr.t))
    return tensors


def dense_array(sparse: object) -> np.ndarray:
    """A SparseTensorProto as the dense numpy array it stands for (linear or [NNZ, rank] indices)."""
    from onnx import numpy_helper

    shape = tuple(int(d) for d in sparse.dims)
    values = numpy_helper.to_array(sparse.values).reshape(-1)
    indices = numpy_helper.to_array(sparse.indices).astype(np.int64)
    out = np.zeros(int(np.prod(shape, dtype=np.int64)), dtype=values.dtype)
    if indices.ndim == 2:  # one row of coordinates per value
        indices = np.ravel_multi_index(tuple(indices.T), shape) if indices.size else indices.reshape(-1)
    out[indices.reshape(-1)] = values
    return out.reshape(shape)


def _same_layout(w: np.ndarray, a: np.ndarray) -> np.ndarray | None:
    """``a`` as laid out like ``w`` (itself, or its transpose for matrices), or None."""
    if a.shape == w.shape:
        return a
    if w.ndim == 2 and a.shape == w.shape[::-1]:
        return a.T
    return None


def _find_tensor(name: str, w: np.ndarray, tensors: dict[str, np.ndarray]) -> np.ndarray | None:
    """Find weight ``name`` in the graph: by name, then by identical values, then by zero mask."""
    if name in tensors:
        a = _same_layout(w, tensors[name])
        if a is not None:
            return a
    candidates = [a for a in (_same_layout(w, t) for t in tensors.values()) if a is not None]
    for a in candidates:
        if np.array_equal(a, w):
            return a
    mask = w == 0
    for a in candidates:  # values rescaled by an exporter optimisation (e.g. a folded BatchNorm)
        if np.array_equal(a == 0, mask):
            return a
    return None


def _compare_zeros(model: torch.nn.Module, data: bytes, target: str,
                   arrays: dict[str, np.ndarray] | None = None) -> dict[str, tuple[float, float]]:
    """Zero fraction of every prunable weight in PyTorch and in the ONNX graph; they must match.
    ``arrays`` (if given) receives each weight as found in the graph, in PyTorch's layout."""
    tensors = _onnx_tensors(data)
    fractions: dict[str, tuple[float, float]] = {}
    problems: list[str] = []
    params = dict(model.named_parameters())
    for name in prunable_parameters(model, preset="all"):
        w = params[name].detach().float().cpu().numpy()
        a = _find_tensor(name, w, tensors)
        torch_zeros = int(np.count_nonzero(w == 0))
        if a is None:
            problems.append(f"{name} was not found in the graph")
            continue
        onnx_zeros = int(np.count_nonzero(a == 0))
        if arrays is not None:
            arrays[name] = a
        fractions[name] = (torch_zeros / w.size, onnx_zeros / a.size)
        if onnx_zeros != torch_zeros:
            problems.append(f"{name} has {torch_zeros} zeros in PyTorch but {onnx_zeros} in ONNX")
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise StudioError(
            f"the zeros of the pruned weights did not survive the export: {shown}; nothing was saved",
            path=target,
            fix="report this model to the developers",
        )
    return fractions


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:300]
