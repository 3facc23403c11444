"""Background jobs: plain functions (no Qt) that compose core calls for the window's workers.

Each job takes ``progress=`` and ``cancel=`` like every long core function, so
:class:`gui.workers.Task` can run it. Results are frozen dataclasses that the views render.
The loaded model is never modified: pruning returns a :class:`core.pruning.PruneResult`, and
anything evaluated or exported is a pruned copy from :func:`core.pruning.apply_result`.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

import numpy as np
import torch

from core.errors import StudioError
from core.progress import CancelToken, Progress, ProgressFn, check, report

SALIENCY_SAMPLES = 256
PERCENTILES = (5.0, 25.0, 50.0, 75.0, 95.0)


# --------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class LayerRow:
    """One row of the layer table (``key`` is the weight's parameter name)."""

    name: str
    key: str
    type: str
    shape: tuple[int, ...]
    params: int
    share: float
    prunable: bool
    sparsity_now: float
    zeros: int = 0  # weights exactly zero now (sparsity_now's count)


@dataclass(frozen=True)
class ModelSummary:
    """Per-layer facts about a loaded model, computed once off the UI thread."""

    rows: tuple[LayerRow, ...]
    total_params: int
    percentiles: Mapping[str, tuple[float, ...]]  # weight key -> |w| percentiles (PERCENTILES)
    # N:M patterns every block of the prunable weights keeps (core.sparsity_pattern.held_patterns)
    patterns: Mapping[str, list[str]] = field(default_factory=dict)

    @property
    def prunable_keys(self) -> list[str]:
        """Parameter names of the prunable weights, in model order."""
        return [r.key for r in self.rows if r.prunable]


@dataclass(frozen=True)
class Session:
    """A loaded model with its summary (``loaded`` is a core.model_io.LoadedModel).

    ``twin`` is a private deep copy for the light worker lane (previews, evaluation): the two
    lanes run at the same time, and core functions may attach temporary hooks to the model they
    work on, so no model object is ever used by two threads at once.
    """

    loaded: Any
    summary: ModelSummary
    twin: Any = None

    @property
    def light_model(self) -> torch.nn.Module:
        """The model copy that light-lane jobs use."""
        return self.twin if self.twin is not None else self.loaded.model


def make_session(loaded: Any) -> Session:
    """Summarise a LoadedModel and make its light-lane twin (call off the UI thread)."""
    return Session(loaded, summarize_loaded(loaded), copy.deepcopy(loaded.model))


class OtherImageSize(StudioError):
    """The data's images are another size than the model was set up for, and the model runs on
    them (a network that pools over whatever size it gets, as torchvision's ResNets do):
    ``shape`` is the data's, which the window may offer to use instead."""

    def __init__(self, error: StudioError, shape: tuple[int, ...]) -> None:
        super().__init__(error.message, path=error.path, field=error.field, fix=error.fix)
        self.shape = shape


@dataclass(frozen=True)
class Baseline:
    """The dense model's accuracy and ONNX sizes on the current data."""

    eval: Any  # core.evaluate.EvalResult
    onnx_bytes: int | None
    compressed_bytes: int | None
    sparse_bytes: int | None = None  # the file with sparse storage (core.export.export_onnx(sparse=True))
    sparse_compressed_bytes: int | None = None  # that file deflated
    sizes_float16: bool = False  # the sizes are those with float16 weights (export_onnx(float16=True))


@dataclass(frozen=True)
class MagnitudePreview:
    """Cheap live preview: global (or per-layer) magnitude masks at the slider's sparsity."""

    result: Any  # PruneResult
    threshold: float | None  # global |w| threshold; None for per-layer scope
    eval: Any  # EvalResult of the pruned copy


SIZE_FIELDS = ("onnx_bytes", "compressed_bytes", "sparse_bytes", "sparse_compressed_bytes", "sizes_float16")
"""RunOutcome's ONNX sizes (core.export.OnnxSizes, in that order), and whether they are those
with float16 weights."""


@dataclass(frozen=True)
class RunOutcome:
    """A finished pruning run with its evaluation, sizes and the magnitude baseline's sparsity."""

    result: Any  # PruneResult
    eval: Any  # EvalResult
    onnx_bytes: int | None
    compressed_bytes: int | None
    magnitude_sparsity: Mapping[str, float] = field(default_factory=dict)
    magnitude_eval: Any = None
    seconds: float = 0.0
    from_sweep: bool = False  # a sweep's point, shown from the Sweep tab (seconds: its share of the sweep)
    restored: bool = False  # saved by an earlier session and given back (gui.runs_store)
    sparse_bytes: int | None = None  # ONNX bytes with sparse storage (core.export.OnnxSizes.sparse_bytes)
    sparse_compressed_bytes: int | None = None  # that file deflated
    sizes_float16: bool = False  # the four sizes are the files' with float16 weights (File ▸ Float16 weights)


# --------------------------------------------------------------------------------------------
# helpers


def staged(progress: ProgressFn | None, prefix: str) -> ProgressFn | None:
    """Wrap ``progress`` so that every stage name reads ``prefix · stage``."""
    if progress is None:
        return None

    def fn(p: Progress) -> None:
        stage = f"{prefix} · {p.stage}" if p.stage and p.stage != prefix else prefix
        progress(Progress(stage, p.done, p.total, p.message))

    return fn


def find_weight(model: torch.nn.Module, name: str) -> tuple[str, torch.Tensor] | None:
    """The weight tensor a layer name refers to: a parameter name or a module with ``.weight``."""
    params = dict(model.named_parameters())
    for key in (name, f"{name}.weight"):
        if key in params:
            return key, params[key]
    try:
        module = model.get_submodule(name)
    except (AttributeError, ValueError):
        return None
    weight = getattr(module, "weight", None)
    if isinstance(weight, torch.Tensor):
        for key, value in params.items():
            if value is weight:
                return key, value
    return None


def as_matrix(weight: torch.Tensor | np.ndarray) -> np.ndarray:
    """A weight as a 2-D float array: conv kernels flattened to out × (in·kh·kw)."""
    w = weight.detach().cpu().float().numpy() if isinstance(weight, torch.Tensor) else np.asarray(weight)
    if w.ndim == 0:
        return w.reshape(1, 1)
    if w.ndim == 1:
        return w.reshape(1, -1)
    return w.reshape(w.shape[0], -1)


def matrix_columns_label(shape: tuple[int, ...]) -> str:
    """What the columns of :func:`as_matrix` are, for a weight of ``shape``: "input" for a
    Linear weight, "input (16·3·3)" (in·kh·kw) for a conv kernel."""
    if len(shape) <= 2:
        return "input"
    return "input (" + "·".join(str(int(d)) for d in shape[1:]) + ")"


def summarize(model: torch.nn.Module, layers: list[Any], pruned_by_default: list[str] | None = None) -> ModelSummary:
    """Build the layer table rows and |w| percentiles from core.model_io.describe_layers output.

    ``pruned_by_default`` (core.pruning.default_layers) decides which rows count as prunable;
    without it the LayerInfo.prunable flags do."""
    chosen = set(pruned_by_default) if pruned_by_default is not None else None
    total = sum(p.numel() for p in model.parameters())
    rows: list[LayerRow] = []
    pct: dict[str, tuple[float, ...]] = {}
    seen: set[str] = set()
    weights: dict[str, torch.Tensor] = {}  # the prunable ones, for the patterns they keep
    for info in layers:
        name = str(getattr(info, "name"))
        found = find_weight(model, name)
        key = found[0] if found else name
        if key in seen:
            continue
        seen.add(key)
        shape = tuple(int(s) for s in getattr(info, "shape", ()) or (found[1].shape if found else ()))
        params = int(getattr(info, "params", 0) or (found[1].numel() if found else 0))
        prunable = (key in chosen if chosen is not None else bool(getattr(info, "prunable", False))) and found is not None
        zeros, count = 0.0, 0
        if found is not None:
            w = found[1].detach()
            count = int((w == 0).sum())
            zeros = count / w.numel() if w.numel() else 0.0
            if prunable:
                weights[key] = w
                a = w.abs().flatten().float().numpy()
                pct[key] = tuple(float(v) for v in np.percentile(a, PERCENTILES))
        rows.append(
            LayerRow(
                name=name, key=key, type=str(getattr(info, "type", "")), shape=shape, params=params,
                share=params / total if total else 0.0, prunable=prunable, sparsity_now=zeros,
                zeros=count,
            )
        )
    from core.sparsity_pattern import held_patterns

    return ModelSummary(tuple(rows), int(total), pct, held_patterns(weights) if pct else {})


def global_threshold(model: torch.nn.Module, masks: Mapping[str, torch.Tensor]) -> float | None:
    """Largest |w| that the masks prune (the global magnitude threshold); None if none pruned."""
    params = dict(model.named_parameters())
    best: float | None = None
    for key, mask in masks.items():
        w = params.get(key)
        if w is None:
            continue
        pruned = w.detach().abs()[~mask.bool()]
        if pruned.numel():
            v = float(pruned.max())
            best = v if best is None else max(best, v)
    return best


def sample_input(bundle: Any, n: int = 1) -> torch.Tensor:
    """The first ``n`` evaluation images (a real sample for tracing and verification)."""
    return bundle.evaluation.x[:n].clone()


# --------------------------------------------------------------------------------------------
# jobs


def summarize_loaded(loaded: Any) -> ModelSummary:
    """Layer summary of a core.model_io.LoadedModel; prunable = what a run prunes by default."""
    from core.model_io import describe_layers
    from core.pruning import default_layers

    try:
        chosen = default_layers(loaded.model, loaded.arch)
    except Exception:  # unusual models: fall back on describe_layers' own flags
        chosen = None
    return summarize(loaded.model, describe_layers(loaded.model), chosen)


def load_demo_job(name: str = "digits_mlp", *, progress: ProgressFn | None = None,
                  cancel: CancelToken | None = None) -> tuple[Session, Any]:
    """Load (training on first use) a built-in demo model and the digits data."""
    from core.data import load_bundle
    from core.demo import load_demo

    loaded = load_demo(name, progress=staged(progress, "Demo model"), cancel=cancel)
    check(cancel)
    report(progress, "Loading digits data", 0, 1)
    bundle = load_bundle("digits", preset=getattr(loaded, "preset", None) or "digits")
    check(cancel)
    report(progress, "Summarising layers", 0, 1)
    return make_session(loaded), bundle


def load_model_job(path: str, *, arch: str | None = None, trust_pickle: bool = False,
                   progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> Session:
    """Load a model file (see core.model_io.load_model) and summarise its layers."""
    from core.model_io import load_model

    report(progress, "Loading model", 0, 1, path)
    loaded = load_model(path, arch=arch, trust_pickle=trust_pickle)
    check(cancel)
    report(progress, "Summarising layers", 0, 1)
    return make_session(loaded)


def load_data_job(source: str, *, preset: str | None = None, input_shape: tuple[int, ...] | None = None,
                  download: bool = False, class_names: str = "", progress: ProgressFn | None = None,
                  cancel: CancelToken | None = None) -> Any:
    """Load images and labels (see core.data.load_bundle); ``class_names``: names for the labels,
    comma-separated or a text file with one per line (core.data.read_class_names), or ""."""
    from core.data import load_bundle, read_class_names

    report(progress, "Loading data", 0, 1, source)
    kwargs: dict[str, Any] = {"preset": preset, "download": download}
    if input_shape is not None:
        kwargs["input_shape"] = input_shape
    if class_names.strip():
        kwargs["class_names"] = read_class_names(class_names.strip())
    bundle = load_bundle(source, **kwargs)
    check(cancel)
    return bundle


def baseline_job(session: Session, bundle: Any, *, float16: bool = False, progress: ProgressFn | None = None,
                 cancel: CancelToken | None = None) -> Baseline:
    """Check model/data compatibility, then the dense accuracy and ONNX sizes (``float16``: with
    float16 weights)."""
    from core.data import check_compatible
    from core.evaluate import evaluate

    loaded = session.loaded
    model = session.light_model
    shape = tuple(loaded.input_shape) or tuple(bundle.input_shape)  # () = unknown: the forward check decides
    try:
        check_compatible(bundle, model, input_shape=shape, num_classes=loaded.num_classes)
    except StudioError as err:
        data_shape = tuple(int(d) for d in bundle.input_shape)
        if err.field != "x" or len(shape) != 3 or data_shape[:1] != shape[:1]:
            raise
        try:  # same channels, another size: does the network run on these images?
            check_compatible(bundle, model, input_shape=data_shape, num_classes=loaded.num_classes)
        except StudioError:
            raise err from None
        raise OtherImageSize(err, data_shape) from err
    ev = evaluate(model, bundle.evaluation, progress=staged(progress, "Dense accuracy"), cancel=cancel)
    check(cancel)
    report(progress, "Dense ONNX size", 0, 1)
    return replace(dense_sizes_job(model, bundle, float16=float16), eval=ev)


def dense_sizes_job(model: torch.nn.Module, bundle: Any, *, float16: bool = False,
                    progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> Baseline:
    """The dense model's ONNX sizes (``float16``: with float16 weights) as a Baseline without an
    evaluation (all None where it cannot export: sizes are informative; Export reports errors)."""
    from core.export import onnx_sizes

    try:
        sizes = onnx_sizes(model, sample_input(bundle), float16=float16)
    except Exception:  # sizes are informative only; the export itself reports real errors
        return Baseline(None, None, None, None, None, float16)
    return Baseline(None, *sizes, sizes_float16=float16)


def saliency_job(model: torch.nn.Module, calibration: Any, *, samples: int = SALIENCY_SAMPLES,
                 arch: str | None = None, progress: ProgressFn | None = None,
                 cancel: CancelToken | None = None) -> dict[str, np.ndarray]:
    """Per-weight empirical-Fisher saliency (core.pruning.saliency) as float32 arrays."""
    from core.pruning import saliency

    n = min(int(samples), int(calibration.x.shape[0]))
    sal = saliency(model, calibration, samples=n, arch=arch, progress=staged(progress, "Importance"),
                   cancel=cancel)
    check(cancel)
    return {k: v.detach().cpu().float().numpy() for k, v in sal.items()}


def magnitude_preview_job(model: torch.nn.Module, bundle: Any, sparsity: float, scope: str = "global",
                          layers: tuple[str, ...] | None = None, *, keep_first: bool = False,
                          keep_last: bool = False, arch: str | None = None,
                          recalibrate_bn: bool | None = None, bn_augment: str = "auto",
                          pattern: str = "", cache: Any = None, progress: ProgressFn | None = None,
                          cancel: CancelToken | None = None) -> MagnitudePreview:
    """Magnitude masks at ``sparsity`` and the accuracy of that pruned copy (cheap, live);
    ``recalibrate_bn``, ``bn_augment``, ``keep_first``, ``keep_last`` and ``pattern`` as in
    core.pruning.PruneRequest (no global threshold under a pattern). ``cache``
    (core.gradient_cache.GradientCache) keeps the BatchNorm refresh check's decision for the next preview."""
    from core.evaluate import evaluate
    from core.pruning import PruneRequest, apply_result, prune

    request = PruneRequest(method="magnitude", sparsity=float(sparsity), scope=scope, layers=layers,
                           recalibrate_bn=recalibrate_bn, bn_augment=bn_augment, keep_first=keep_first,
                           keep_last=keep_last, pattern=pattern)
    result = prune(model, bundle.calibration, request, arch=arch, progress=staged(progress, "Magnitude preview"),
                   cancel=cancel, cache=cache)
    check(cancel)
    pruned = apply_result(model, result)
    ev = evaluate(pruned, bundle.evaluation, progress=staged(progress, "Preview accuracy"), cancel=cancel)
    threshold = global_threshold(model, result.masks) if scope == "global" and not pattern else None
    return MagnitudePreview(result, threshold, ev)


def run_job(model: torch.nn.Module, bundle: Any, request: Any, *, arch: str | None = None,
            compare_magnitude: bool = True, cache: Any = None, sparse_deflate: bool = False,
            float16: bool = False, progress: ProgressFn | None = None,
            cancel: CancelToken | None = None,
            on_partial: Callable[[Mapping[str, object]], None] | None = None) -> RunOutcome:
    """Prune with ``request``, evaluate the pruned copy, measure its ONNX sizes, and compute the
    magnitude masks at the same sparsity for comparison. ``cache`` (core.gradient_cache.GradientCache)
    lets a run reuse the previous run's gradients on the same model and sample; ``on_partial``
    receives each CHITA++ stage's record as it finishes (core.pruning.prune's ``on_stage``);
    ``sparse_deflate``: also deflate the sparse-storage file (core.export.onnx_sizes); ``float16``:
    the sizes with float16 weights."""
    import time

    from core.evaluate import evaluate
    from core.pruning import METHOD_LABELS, apply_result, prune

    t0 = time.monotonic()
    label = METHOD_LABELS.get(request.method, request.method)
    result = prune(model, bundle.calibration, request, arch=arch, progress=staged(progress, f"Pruning with {label}"),
                   cancel=cancel, cache=cache, on_stage=on_partial)
    seconds = time.monotonic() - t0
    check(cancel)
    pruned = apply_result(model, result)
    ev = evaluate(pruned, bundle.evaluation, progress=staged(progress, "Accuracy after pruning"), cancel=cancel)
    check(cancel)
    mag_sparsity: Mapping[str, float] = {}
    mag_eval = None
    if compare_magnitude:
        if request.method == "magnitude":
            mag_sparsity, mag_eval = dict(result.layer_sparsity), ev
        else:
            mag_sparsity, mag_eval = _magnitude_baseline(model, bundle, request, arch, "Magnitude baseline",
                                                         progress, cancel, cache)
    check(cancel)
    dense, compressed, sparse, sparse_z, half = _onnx_sizes(pruned, bundle, progress, sparse_deflate, float16)
    return RunOutcome(result, ev, dense, compressed, mag_sparsity, mag_eval, seconds, sparse_bytes=sparse,
                      sparse_compressed_bytes=sparse_z, sizes_float16=half)


def _magnitude_baseline(model: torch.nn.Module, bundle: Any, request: Any, arch: str | None, label: str,
                        progress: ProgressFn | None, cancel: CancelToken | None,
                        cache: Any = None) -> tuple[dict[str, float], Any]:
    """Magnitude pruning with ``request``'s other settings: its per-layer sparsity and evaluation
    (``cache``: the run's GradientCache, whose BatchNorm check decision it reuses)."""
    from core.evaluate import evaluate
    from core.pruning import apply_result, prune

    mag = prune(model, bundle.calibration, replace(request, method="magnitude"), arch=arch,
                progress=staged(progress, label), cancel=cancel, cache=cache)
    check(cancel)
    return dict(mag.layer_sparsity), evaluate(apply_result(model, mag), bundle.evaluation, cancel=cancel)


def _onnx_sizes(pruned: torch.nn.Module, bundle: Any, progress: ProgressFn | None,
                sparse_deflate: bool = False, float16: bool = False) -> tuple[Any, ...]:
    """The pruned copy's ONNX bytes (core.export.OnnxSizes: dense storage as written and
    deflated, sparse storage as written and, with ``sparse_deflate``, deflated; all None if it
    cannot export), then whether they are with float16 weights (``float16``)."""
    from core.export import onnx_sizes

    report(progress, "ONNX size", 0, 1)
    try:
        sizes: tuple[Any, ...] = (*onnx_sizes(pruned, sample_input(bundle), sparse_deflate=sparse_deflate,
                                              float16=float16), float16)
    except Exception:
        sizes = (None, None, None, None, float16)
    report(progress, "ONNX size", 1, 1)
    return sizes


def refine_job(model: torch.nn.Module, bundle: Any, outcome: RunOutcome, steps: int, *,
               arch: str | None = None, sparse_deflate: bool = False, float16: bool = False,
               progress: ProgressFn | None = None,
               cancel: CancelToken | None = None) -> RunOutcome:
    """Refine a finished run's kept weights (core.pruning.refine_result, mask fixed), evaluate
    the result and measure its ONNX sizes. The outcome has no magnitude evaluation (unless the
    method is magnitude): the like-for-like baseline, magnitude refined as many steps, costs as
    much as the refinement itself and comes from :func:`refined_magnitude_job` afterwards.
    ``outcome`` is not modified."""
    import time

    from core.evaluate import evaluate
    from core.pruning import apply_result, refine_result

    t0 = time.monotonic()
    result = refine_result(model, bundle.calibration, outcome.result, steps, arch=arch,
                           progress=staged(progress, "Refining"), cancel=cancel)
    pruned = apply_result(model, result)
    ev = evaluate(pruned, bundle.evaluation, progress=staged(progress, "Accuracy after refining"), cancel=cancel)
    check(cancel)
    mag_eval = ev if result.request.method == "magnitude" else None
    dense, compressed, sparse, sparse_z, half = _onnx_sizes(pruned, bundle, progress, sparse_deflate, float16)
    return RunOutcome(result, ev, dense, compressed, outcome.magnitude_sparsity, mag_eval,
                      outcome.seconds + time.monotonic() - t0, sparse_bytes=sparse,
                      sparse_compressed_bytes=sparse_z, sizes_float16=half)


def complete_point_job(model: torch.nn.Module, bundle: Any, outcome: RunOutcome, *, arch: str | None = None,
                       cache: Any = None, sparse_deflate: bool = False, float16: bool = False,
                       progress: ProgressFn | None = None,
                       cancel: CancelToken | None = None) -> RunOutcome:
    """What a sweep's point lacks to be shown like a run: the magnitude baseline at its sparsity
    (unless the outcome has it) and its ONNX sizes (:func:`sizes_job`; ``sparse_deflate``: the
    sparse-storage file's deflated size too; ``float16``: with float16 weights). ``outcome`` is not
    modified."""
    mag_sparsity, mag_eval = outcome.magnitude_sparsity, outcome.magnitude_eval
    request = outcome.result.request
    if request.method != "magnitude" and (mag_eval is None or not mag_sparsity):
        mag_sparsity, mag_eval = _magnitude_baseline(model, bundle, request, arch, "Magnitude baseline",
                                                     progress, cancel, cache)
    check(cancel)
    outcome = replace(outcome, magnitude_sparsity=mag_sparsity, magnitude_eval=mag_eval)
    if needs_sizes(outcome, sparse_deflate, float16):
        outcome = sizes_job(model, bundle, outcome, sparse_deflate=sparse_deflate, float16=float16,
                            progress=progress, cancel=cancel)
    return outcome


def needs_sizes(outcome: RunOutcome, sparse_deflate: bool, float16: bool) -> bool:
    """Whether ``outcome`` lacks the ONNX sizes the settings show: any of them, the sparse-storage
    file deflated (``sparse_deflate``), or those with (or without) float16 weights."""
    sizes = [getattr(outcome, k) for k in SIZE_FIELDS[:4]]
    return None in sizes[:3] or (sparse_deflate and sizes[3] is None) or outcome.sizes_float16 != float16


def sizes_job(model: torch.nn.Module, bundle: Any, outcome: RunOutcome, *, sparse_deflate: bool = True,
              float16: bool = False, progress: ProgressFn | None = None,
              cancel: CancelToken | None = None) -> RunOutcome:
    """``outcome`` with its ONNX sizes measured (``sparse_deflate``: the sparse-storage file's
    deflated size included, as when sparse storage is switched on after the run; ``float16``:
    with float16 weights, as when that is switched). ``outcome`` is not modified."""
    from core.pruning import apply_result

    check(cancel)
    sizes = _onnx_sizes(apply_result(model, outcome.result), bundle, progress, sparse_deflate, float16)
    return replace(outcome, **dict(zip(SIZE_FIELDS, sizes)))


def export_points_job(model: torch.nn.Module, rows: Any, bundle: Any, folder: str, *, stem: str,
                      sparse: bool = False, float16: bool = False, progress: ProgressFn | None = None,
                      cancel: CancelToken | None = None) -> dict:
    """Export every sweep point whose weights the sweep kept to ``folder`` (core.sweep.export_points,
    each verified in onnxruntime and scored there on the evaluation images; ``sparse``: sparse
    storage; ``float16``: float16 weights) → {(method, sparsity): ExportReport or None}."""
    from core.sweep import export_points

    return export_points(model, rows, folder, stem=stem, sample=sample_input(bundle),
                         verify_batch=sample_input(bundle, 16), sparse=sparse, float16=float16,
                         evaluation=bundle.evaluation, progress=progress, cancel=cancel)


def refined_magnitude_job(model: torch.nn.Module, bundle: Any, request: Any, *, arch: str | None = None,
                          cache: Any = None, progress: ProgressFn | None = None,
                          cancel: CancelToken | None = None) -> Any:
    """Magnitude pruning with ``request``'s settings, refinement steps included, evaluated: the
    baseline a refined run is compared with (an EvalResult)."""
    return _magnitude_baseline(model, bundle, request, arch, "Magnitude baseline, refined", progress, cancel,
                               cache)[1]


def export_job(model: torch.nn.Module, result: Any, bundle: Any, path: str, *, sparse: bool = False,
               float16: bool = False, reference: Any = None, progress: ProgressFn | None = None,
               cancel: CancelToken | None = None) -> Any:
    """Export the pruned copy to ONNX (verified in onnxruntime, and scored there on the evaluation
    images beside ``reference``, the run's EvalResult; ``sparse``: sparse storage; ``float16``:
    float16 weights) → core.export.ExportReport."""
    from core.export import export_onnx
    from core.pruning import apply_result

    pruned = apply_result(model, result)
    return export_onnx(pruned, sample_input(bundle), path, verify_batch=sample_input(bundle, 16),
                       sparse=sparse, float16=float16, evaluation=bundle.evaluation, reference=reference,
                       progress=progress, cancel=cancel)


def latency_job(model: torch.nn.Module, bundle: Any, path: str, *, batch: int = 1,
                progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> tuple[Any, Any]:
    """The ONNX file at ``path`` and the dense ``model``'s export, timed in onnxruntime in
    alternating rounds on ``batch`` evaluation images (core.latency) → (file's, dense's) Latency."""
    from core.export import onnx_model_bytes
    from core.latency import measure_latency

    report(progress, "latency", 0, 1, "exporting the dense model")
    dense = onnx_model_bytes(model, sample_input(bundle, 2))
    check(cancel)
    pruned, dense_lat = measure_latency([path, dense], sample_input(bundle, batch), progress=progress,
                                        cancel=cancel)
    return pruned, dense_lat


def compare_file_job(path: str, bundle: Any, *, arch: str | None = None, progress: ProgressFn | None = None,
                     cancel: CancelToken | None = None) -> tuple[str, Any, float | None]:
    """Another model file (an exported pruned ONNX file, say) scored on the evaluation images:
    (its source, its EvalResult, its share of zero weights). ``arch`` serves state_dict files;
    pickles are refused as anywhere without consent (open them with Open model)."""
    from core.evaluate import evaluate
    from core.model_io import load_model
    from core.prunable import weight_zero_fraction

    report(progress, "Loading the file", 0, 1, os.path.basename(path))
    loaded = load_model(path, arch=arch)
    check(cancel)
    ev = evaluate(loaded.model, bundle.evaluation, progress=staged(progress, "Accuracy of the file"), cancel=cancel)
    return loaded.source, ev, weight_zero_fraction(loaded.model)


def save_weights_job(model: torch.nn.Module, result: Any, path: str, *, metadata: Mapping[str, str] | None = None,
                     progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> Any:
    """Save the pruned copy's state_dict to ``path`` (.safetensors or .pt; core.weights_export,
    atomic, read back) → core.weights_export.WeightsReport."""
    from core.pruning import apply_result
    from core.weights_export import save_weights

    report(progress, "Saving the weights", 0, 1)
    check(cancel)
    return save_weights(apply_result(model, result), path, metadata=metadata)


def sensitivity_job(model: torch.nn.Module, bundle: Any, layers: list[str], sparsities: list[float], *,
                    progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> Any:
    """Each of ``layers`` pruned alone by magnitude at each sparsity, scored on the last
    calibration images (core.sensitivity.layer_sensitivity)."""
    from core.sensitivity import layer_sensitivity, scan_images

    return layer_sensitivity(model, scan_images(bundle.calibration), list(layers), list(sparsities),
                             progress=progress, cancel=cancel)


def sweep_job(model: torch.nn.Module, bundle: Any, methods: list[str], sparsities: list[float], *,
              samples: int, seed: int = 0, arch: str | None = None, scope: str = "global",
              refine_steps: int = 0, images_per_row: int = 1, recalibrate_bn: bool | None = None,
              bn_augment: str = "auto", update_scale: float | None = 1.0, keep_first: bool = False,
              keep_last: bool = False, layers: tuple[str, ...] | None = None, pattern: str = "",
              progress: ProgressFn | None = None, cancel: CancelToken | None = None,
              on_partial: Callable[[Any], None] | None = None, cache: Any = None,
              keep_results: int = 0) -> Any:
    """Accuracy against sparsity for several methods (core.sweep.run_sweep); ``on_partial``
    receives the sweep so far after each point; ``cache`` (the window's GradientCache) lets the
    sweep and the runs share G; ``keep_results`` bytes of the points' pruned weights stay on
    their rows, for showing and exporting a point. With an N:M ``pattern`` the sparsities are
    the pattern's one: the sweep compares the methods under it."""
    from core.sweep import run_sweep

    return run_sweep(model, bundle, list(methods), list(sparsities), samples=samples, seed=seed,
                     arch=arch, scope=scope, refine_steps=refine_steps, recalibrate_bn=recalibrate_bn,
                     images_per_row=images_per_row, bn_augment=bn_augment,
                     update_scale=update_scale, keep_first=keep_first, keep_last=keep_last,
                     layers=layers, pattern=pattern, progress=progress, cancel=cancel,
                     on_partial=on_partial, cache=cache, keep_results=keep_results)
