"""Accuracy against sparsity for several methods: the picture people show at meetings.

Each method's sparsities run as one :func:`core.pruning.prune_path`, and the methods share one
:class:`core.pruning.GradientCache`, so gradients are computed once for OBD, WoodFisher and CHITA
together (CHITA++ recomputes its own) and CHITA warm-starts each sparsity from the previous one.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from core.class_accuracy import (
    WORST_CLASS_COLUMNS,
    class_changes,
    class_scores,
    worst_class_cells,
)
from core.data import DataBundle, ImageSet
from core.evaluate import EvalResult, PairedDifference, evaluate, paired_difference
from core.export import ExportReport, export_onnx, pruned_file_name
from core.progress import CancelToken, Progress, ProgressFn, check, report
from core.pruning import (
    METHOD_LABELS,
    GradientCache,
    PruneRequest,
    PruneResult,
    apply_result,
    describe_samples,
    prune_path,
)


@dataclass(frozen=True)
class SweepRow:
    """One (method, sparsity) point: its accuracy and the run's summary."""

    method: str
    sparsity: float
    eval: EvalResult
    nonzeros: int
    total: int
    lam: float | None
    seconds: float  # pruning time (gradients + solve + BatchNorm), excluding evaluation: the
    # method's whole sweep (its points share G) split evenly over its points
    # the point's pruned weights and masks, where run_sweep(keep_results=) kept them: a front
    # end can show and export any point of a sweep without pruning it again
    result: PruneResult | None = field(default=None, compare=False, repr=False)


BASELINE = "magnitude"  # the method every other one is compared with at the same sparsity


@dataclass(frozen=True)
class SweepResult:
    """All rows of a sweep, plus the dense model's accuracy."""

    rows: tuple[SweepRow, ...]
    dense: EvalResult
    seconds: float
    meta: dict = field(default_factory=dict)

    def series(self, method: str) -> list[SweepRow]:
        """The rows of one method, by rising sparsity."""
        return sorted((r for r in self.rows if r.method == method), key=lambda r: r.sparsity)

    def change(self, row: SweepRow) -> PairedDifference:
        """The row's accuracy minus the dense model's, paired on the same evaluation images."""
        return paired_difference(row.eval, self.dense)

    def versus(self, row: SweepRow, method: str = BASELINE) -> PairedDifference | None:
        """The row's accuracy minus ``method``'s at the same sparsity, paired on the same
        evaluation images: does the row beat magnitude pruning there? None where the sweep has
        no such point, or the row is that method's own."""
        if row.method == method:
            return None
        other = next((r for r in self.rows if r.method == method and r.sparsity == row.sparsity), None)
        return None if other is None else paired_difference(row.eval, other.eval)

    def to_csv(self, path: str | Path, images: ImageSet | None = None) -> None:
        """Write one line per row: method, sparsity, accuracy with its interval, loss, …, the
        change against the dense model with its paired 95% interval, the change against
        magnitude pruning at the same sparsity with its own (empty where the sweep has none),
        the N:M pattern the points were pruned to (empty: unstructured) and, given the
        evaluation ``images`` the sweep was scored on, the class that lost most against dense
        with its paired interval and the classes clearly lower (:mod:`core.class_accuracy`;
        empty without them)."""
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["method", "sparsity", "accuracy", "accuracy_lo", "accuracy_hi", "loss",
                        "n_eval", "nonzeros", "total", "lambda", "prune_seconds",
                        "change_vs_dense", "change_lo", "change_hi",
                        "change_vs_magnitude", "vs_magnitude_lo", "vs_magnitude_hi", "pattern",
                        *WORST_CLASS_COLUMNS])
            w.writerow(["dense", 0.0, self.dense.accuracy, *self.dense.accuracy_ci,
                        self.dense.loss, self.dense.n, "", "", "", "", "", "", "", "", "", "", "", "",
                        *("" for _ in WORST_CLASS_COLUMNS)])
            pattern = str(self.meta.get("pattern") or "")
            for r in self.rows:
                d, m = self.change(r), self.versus(r)
                w.writerow([r.method, r.sparsity, r.eval.accuracy, *r.eval.accuracy_ci,
                            r.eval.loss, r.eval.n, r.nonzeros, r.total,
                            "" if r.lam is None else r.lam, round(r.seconds, 3),
                            d.difference, *d.ci, *(("", "", "") if m is None else (m.difference, *m.ci)),
                            pattern, *worst_class_cells(class_changes(r.eval, self.dense, images))])


CLASS_CSV_COLUMNS = ["method", "sparsity", "label", "class", "n", "correct", "accuracy", "accuracy_lo",
                     "accuracy_hi", "change_vs_dense", "change_lo", "change_hi", "clear"]


def class_curves(result: SweepResult, images: ImageSet, method: str) -> dict[str, list[tuple[float, float]]]:
    """Each class's accuracy against sparsity for ``method``: {class name: [(sparsity, accuracy),
    …]}, the dense model's first at sparsity 0, by rising sparsity (fractions). Which classes a
    method gives up first as the sparsity rises. {} where the rows were not scored on ``images``."""
    rows = [r for r in result.series(method) if r.eval.hits is not None and r.eval.hits.numel() == len(images)]
    if result.dense.hits is None or result.dense.hits.numel() != len(images) or not rows:
        return {}
    curves: dict[str, list[tuple[float, float]]] = {}
    for sparsity, ev in [(0.0, result.dense), *((r.sparsity, r.eval) for r in rows)]:
        for c in class_scores(ev, images.y, names=images.class_names):
            curves.setdefault(c.name, []).append((sparsity, c.accuracy))
    return curves


def write_class_csv(result: SweepResult, images: ImageSet, path: str | Path) -> None:
    """One line per (point, class): the class's accuracy on its evaluation images with its Wilson
    interval and its paired change against the dense model (``clear``: excludes 0 after allowing
    for the number of classes, :mod:`core.class_accuracy`); the dense model's own lines first."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(CLASS_CSV_COLUMNS)
        for c in class_scores(result.dense, images.y, names=images.class_names):
            w.writerow(["dense", 0.0, c.label, c.name, c.n, c.correct, c.accuracy, *c.ci, "", "", "", ""])
        for r in result.rows:
            for c in class_changes(r.eval, result.dense, images):
                w.writerow([r.method, r.sparsity, c.label, c.name, c.n, c.correct, c.accuracy, *c.ci,
                            c.change.difference, *c.change.ci, int(c.clear)])


def run_sweep(model: nn.Module, bundle: DataBundle, methods: list[str], sparsities: list[float],
              *, samples: int = 1000, seed: int = 0, arch: str | None = None,
              recalibrate_bn: bool | None = None, scope: str = "global",
              lam: float | None = None, stages: int = 0,
              recalibrate_between_stages: bool = False, refine_steps: int = 0,
              images_per_row: int = 1, bn_augment: str = "auto", schedule: str = "log",
              update_scale: float | None = 1.0, layers: tuple[str, ...] | None = None,
              keep_first: bool = False, keep_last: bool = False, pattern: str = "",
              progress: ProgressFn | None = None,
              cancel: CancelToken | None = None,
              on_partial: Callable[[SweepResult], None] | None = None,
              cache: GradientCache | None = None, keep_results: int = 0) -> SweepResult:
    """Prune with each method at each sparsity and evaluate on the bundle's evaluation images.

    ``layers``, ``keep_first`` and ``keep_last`` choose the pruned weights as in
    :class:`core.pruning.PruneRequest`; the other settings are its fields too. With an N:M
    ``pattern`` the sparsities must be the pattern's one (a sweep over methods at it).

    ``model`` is never modified. Progress is reported per (method, sparsity) point under the
    stage ``"sweep"``; the inner stages (gradients, solve) are forwarded with a prefix.

    Each point is evaluated as soon as it is pruned. ``on_partial`` then receives the sweep so
    far: a :class:`SweepResult` of the finished points (``meta["partial"]`` True, ``meta
    ["points"]`` the number asked), so that a front end can draw points as they come and keep
    them if the sweep is cancelled. In it a method's seconds are its pruning time so far split
    over its points so far; the returned result splits the whole time, as documented on
    :class:`SweepRow`.

    ``cache``: a :class:`core.pruning.GradientCache` shared with other runs on this model (the
    GUI's): a sweep after a run on the same model, images and sample takes that run's G and
    BatchNorm check, and a run after the sweep takes the sweep's. Without it the sweep keeps
    its own, shared by its single-stage methods only.

    ``keep_results``: bytes of pruned weights the sweep may keep. Each point's
    :class:`core.pruning.PruneResult` stays on its row (:attr:`SweepRow.result`, partial rows
    included) while the kept results' :attr:`~core.pruning.PruneResult.nbytes` fit in it, in the
    order the points finish; later points keep ``None``. 0 (the default) keeps none.
    """
    t0 = time.perf_counter()
    dense = evaluate(model, bundle.evaluation, cancel=cancel)
    rows: list[SweepRow] = []
    total_points = len(methods) * len(sparsities)
    done = 0
    if cache is None:
        cache = GradientCache()  # one G for every single-stage method that needs gradients
    samples_used: int | None = None  # gradient rows, where the calibration set gave fewer
    samples_note: str | None = None
    kept_bytes = 0  # of the PruneResults kept on rows (keep_results)
    kept_dense: list[str] = []  # the layers keep_first / keep_last left dense, by name
    pattern_dense: list[str] = []  # the layers an N:M pattern left dense (no blocks of M)

    def meta() -> dict:
        """The sweep's settings, and the gradient rows where fewer than asked."""
        return {"samples": samples, "samples_used": samples_used or samples,
                "samples_note": samples_note, "seed": seed, "scope": scope,
                "recalibrate_bn": recalibrate_bn, "refine_steps": refine_steps,
                "images_per_row": images_per_row, "bn_augment": bn_augment,
                "schedule": schedule, "update_scale": update_scale,
                "layers": None if layers is None else list(layers), "keep_first": keep_first,
                "keep_last": keep_last, "kept_dense": list(kept_dense), "pattern": pattern,
                "pattern_dense": list(pattern_dense)}

    for method in methods:
        check(cancel)
        label = METHOD_LABELS.get(method, method)

        def inner(p: Progress, _label: str = label) -> None:
            report(progress, "sweep", done + 0.5 * p.fraction, total_points,
                   f"{_label}: {p.message or p.stage}")

        request = PruneRequest(method=method, sparsity=sparsities[0], samples=samples, seed=seed,
                               recalibrate_bn=recalibrate_bn, scope=scope, lam=lam, stages=stages,
                               recalibrate_between_stages=recalibrate_between_stages,
                               refine_steps=refine_steps, images_per_row=images_per_row,
                               bn_augment=bn_augment, schedule=schedule,
                               update_scale=update_scale, layers=None if layers is None else tuple(layers),
                               keep_first=keep_first, keep_last=keep_last, pattern=pattern)
        t1 = time.perf_counter()
        evaluating = 0.0  # seconds of evaluation and on_partial inside the path: not pruning time
        points: dict[int, tuple[EvalResult, PruneResult, bool]] = {}  # by position; kept?

        def finished(i: int, res: PruneResult, _label: str = label, _method: str = method) -> None:
            nonlocal done, evaluating, samples_used, samples_note, kept_bytes
            t2 = time.perf_counter()
            check(cancel)
            ev = evaluate(apply_result(model, res), bundle.evaluation, cancel=cancel)
            keep = kept_bytes + res.nbytes <= keep_results
            kept_bytes += res.nbytes if keep else 0
            points[i] = (ev, res, keep)
            if not kept_dense:
                kept_dense.extend(res.info.get("kept_dense", []))
            if not pattern_dense:
                pattern_dense.extend((res.info.get("pattern") or {}).get("dense_layers", []))
            fewer = describe_samples(res.info)
            if fewer and samples_note is None:
                samples_used, samples_note = int(res.info["samples"]), fewer
            done += 1
            report(progress, "sweep", done, total_points,
                   f"{_label} at {100 * sparsities[i]:.0f}%: {100 * ev.accuracy:.2f}%")
            if on_partial is not None:
                so_far = (t2 - t1 - evaluating) / len(points)
                on_partial(SweepResult(tuple(rows) + _rows(_method, sparsities, points, so_far),
                                       dense, time.perf_counter() - t0,
                                       {**meta(), "partial": True, "points": total_points}))
            evaluating += time.perf_counter() - t2

        prune_path(model, bundle.calibration, request, list(sparsities), arch=arch,
                   progress=inner, cancel=cancel, cache=cache, on_result=finished)
        prune_seconds = time.perf_counter() - t1 - evaluating
        rows.extend(_rows(method, sparsities, points, prune_seconds / len(sparsities)))

    return SweepResult(tuple(rows), dense, time.perf_counter() - t0, meta())


def _rows(method: str, sparsities: list[float],
          points: dict[int, tuple[EvalResult, PruneResult, bool]], seconds: float) -> tuple[SweepRow, ...]:
    """The finished points of one method as rows, in the order of ``sparsities`` (each with its
    PruneResult where it is kept)."""
    return tuple(SweepRow(method, sparsities[i], ev, res.nonzeros, res.total, res.lam, seconds,
                          res if keep else None)
                 for i, (ev, res, keep) in sorted(points.items()))


def export_points(model: nn.Module, rows: tuple[SweepRow, ...] | list[SweepRow], folder: str | Path, *,
                  stem: str, sample: torch.Tensor, verify_batch: torch.Tensor | None = None,
                  done: dict[tuple[str, float], ExportReport | None] | None = None,
                  sparse: bool = False, float16: bool = False, evaluation: ImageSet | None = None,
                  progress: ProgressFn | None = None,
                  cancel: CancelToken | None = None) -> dict[tuple[str, float], ExportReport | None]:
    """Export each row's pruned model to ``folder`` as :func:`core.export.pruned_file_name`
    (``stem``, method, sparsity), atomically and verified in onnxruntime
    (:func:`core.export.export_onnx`, with its ``sparse`` storage and ``float16`` weights);
    ``model`` is never modified.
    ``evaluation``: the images the sweep was scored on; each file is then scored on them in
    onnxruntime beside its row's accuracy (``ExportReport.onnx_eval``, ``reference_eval``).

    Returns ``done`` (a new dict if None) with an entry per row, keyed (method, sparsity): its
    ExportReport, or None where the row has no kept result (``run_sweep(keep_results=)``).
    Rows already in ``done`` are skipped, so a caller can export a running sweep's points as
    they arrive. Progress: stage ``"export points"``, one unit per row; a cancel stops between
    (or inside) exports and leaves the files written so far.
    """
    done = {} if done is None else done
    todo = [r for r in rows if (r.method, r.sparsity) not in done]
    for i, row in enumerate(todo):
        check(cancel)
        report(progress, "export points", i, len(todo), f"{METHOD_LABELS.get(row.method, row.method)} "
               f"at {100 * row.sparsity:g}%")
        if row.result is None:
            done[(row.method, row.sparsity)] = None
            continue
        path = Path(folder) / pruned_file_name(stem, row.method, row.sparsity)
        done[(row.method, row.sparsity)] = export_onnx(apply_result(model, row.result), sample, path,
                                                       verify_batch=verify_batch, sparse=sparse,
                                                       float16=float16,
                                                       evaluation=evaluation,
                                                       reference=row.eval if evaluation is not None else None,
                                                       cancel=cancel)
    report(progress, "export points", len(todo), len(todo))
    return done


def plot_sweep(result: SweepResult, path: str | Path, title: str = "") -> None:
    """Accuracy against sparsity with 95% interval bands, written as PNG or SVG (headless)."""
    from core.plotting import write_sweep_plot

    write_sweep_plot(result, path, title=title)
