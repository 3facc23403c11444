"""A pruning run written up in Markdown: what was pruned, how, and what it cost, to ship beside the file.

The report holds the numbers the app and the CLI show, with their intervals, so that a pruned
model sent to someone else carries how it was made: the request's settings, the accuracy of the
dense and the pruned network on the same evaluation images (Wilson 95% intervals) and the paired
change (Agresti–Min), the change per class (:mod:`core.class_accuracy`), each layer's sparsity,
the solver's objective against the magnitude mask's backsolve, the timings, and, where the run was
exported, the ONNX file's size, verification and accuracy in onnxruntime (and its time there, if
measured). Plain Markdown: it reads as text and renders on any code host.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from typing import Any, Sequence

from core.atomic_file import write_atomic
from core.batchnorm import describe_batchnorm
from core.changed_images import SHEET_LIMIT
from core.class_accuracy import called, class_changes, lost_to_text
from core.evaluate import EvalResult, paired_or_none


def _pct(ev: EvalResult) -> str:
    lo, hi = ev.accuracy_ci
    return f"{100 * ev.accuracy:.2f}% [{100 * lo:.2f}, {100 * hi:.2f}]"


def _points(d: Any) -> str:
    lo, hi = d.ci
    return (f"{100 * d.difference:+.2f} points [{100 * lo:+.2f}, {100 * hi:+.2f}] "
            f"({d.a_only:,} images better, {d.b_only:,} worse)")


def _table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A Markdown table (cells' ``|`` escaped)."""
    def cell(v: object) -> str:
        return str(v).replace("|", "\\|")
    return ["| " + " | ".join(cell(h) for h in head) + " |", "| " + " | ".join("---" for _ in head) + " |",
            *("| " + " | ".join(cell(v) for v in r) + " |" for r in rows)]


def run_report(result: Any, *, model: str, dense: EvalResult, pruned: EvalResult, images: Any = None,
               data: str = "", magnitude: EvalResult | None = None, export: Any = None,
               latency: tuple[Any, Any] | None = None, created: _dt.datetime | None = None,
               command: str | None = None, lost_images: str | None = None) -> str:
    """The Markdown report of one run.

    ``result`` is the :class:`core.pruning.PruneResult`; ``model`` and ``data`` name the sources;
    ``dense`` and ``pruned`` are the two networks' :class:`EvalResult` on the same evaluation
    ``images`` (an ImageSet, for the classes); ``magnitude``, magnitude pruning's at the same
    sparsity where measured; ``export``, the :class:`core.export.ExportReport` of the run's file;
    ``latency``, (the file's, the dense model's) :class:`core.latency.Latency`; ``command``, the
    command line that made the run (the CLI's), to make it again; ``lost_images``, the link (a
    path relative to the report) to the contact sheet of the images the run lost against dense
    (:func:`core.changed_images.write_contact_sheet`), shown under the classes.
    """
    from core import __version__
    from core.pruning import (
        METHOD_LABELS,
        describe_samples,
        describe_update_scale,
        stages_hint,
    )

    req = result.request
    when = (created or _dt.datetime.now()).strftime("%Y-%m-%d %H:%M")
    label = METHOD_LABELS.get(req.method, req.method)
    lines = [f"# Pruning report: {model}", "",
             f"{label} at {100 * result.sparsity:.2f}% sparsity{f' ({req.pattern})' if req.pattern else ''}. "
             f"Written by CHITA Studio {__version__} on {when}.", ""]
    if command:
        lines += ["Made with:", "", "```", command, "```", ""]

    # --- the run ---------------------------------------------------------------------------
    info = result.info
    kept_dense = list(info.get("kept_dense", []))
    pattern = info.get("pattern") or {}
    run = [("Method", label),
           ("Sparsity", f"{100 * result.sparsity:.2f}% of the prunable weights: {result.nonzeros:,} of "
                        f"{result.total:,} kept (asked {100 * req.sparsity:g}%)"),
           ("Scope", "global (one budget)" if req.scope == "global" else "per layer")]
    if req.pattern:
        run.append(("Pattern", f"{req.pattern} in every block along the inputs"
                               + (f"; left dense: {', '.join(pattern.get('dense_layers', []))}"
                                  if pattern.get("dense_layers") else "")))
    if kept_dense:
        run.append(("Kept dense", ", ".join(kept_dense)))
    if "samples" in info:
        run.append(("Gradient rows (n)", f"{int(info['samples']):,}"
                    + (f" of {int(info.get('images_per_row', 1))} images each" if info.get("images_per_row", 1) != 1 else "")))
    fewer = describe_samples(info)
    if fewer:
        run.append(("Note", fewer))
    if result.lam is not None:
        run.append(("λ (ridge)", f"{result.lam:.3g}, chosen on held-out calibration loss" if req.lam is None
                    else f"{result.lam:.3g}, as asked"))
    if "schedule" in info:
        run.append(("CHITA++ stages", f"{len(info['schedule'])} ({info.get('schedule_shape', req.schedule)} schedule)"))
    bn = describe_batchnorm(info)
    if bn:
        run.append(("BatchNorm", bn.removeprefix("BatchNorm: ")))
    update = describe_update_scale(info)
    if update:
        run.append(("Update", update))
    steps = info.get("refinement") or []
    if steps:
        run.append(("Refinement", f"{sum(1 for s in steps if s['accepted'])} of {len(steps)} steps taken"))
    run.append(("Seed", str(req.seed)))
    lines += ["## Run", "", *_table(("setting", "value"), run), "",
              "The request in full: " + ", ".join(f"`{f.name}={getattr(req, f.name)!r}`"
                                                  for f in dataclasses.fields(req)) + ".", ""]

    # --- accuracy --------------------------------------------------------------------------
    source = getattr(images, "source", "") if images is not None else ""
    lines += ["## Accuracy", "",
              f"On {pruned.n:,} evaluation images ({source or data or 'source not given'}); accuracy with its Wilson 95% interval, changes paired "
              "on the same images with their 95% interval (Agresti–Min).", ""]
    acc = [("dense", _pct(dense), f"{dense.loss:.4f}"), (label, _pct(pruned), f"{pruned.loss:.4f}")]
    if magnitude is not None and req.method != "magnitude":
        acc.append(("magnitude, same sparsity", _pct(magnitude), f"{magnitude.loss:.4f}"))
    lines += _table(("network", "accuracy", "loss"), acc) + [""]
    d = paired_or_none(pruned, dense)
    if d is not None:
        lines.append(f"- Change against dense: {_points(d)}.")
    m = paired_or_none(pruned, magnitude) if req.method != "magnitude" else None
    if m is not None:
        lines.append(f"- Change against magnitude at the same sparsity: {_points(m)}.")
    hint = stages_hint(req.method, d, m)
    if hint:
        lines.append(f"- {hint}")
    lines.append("")

    # --- classes ---------------------------------------------------------------------------
    scores = class_changes(pruned, dense, images)
    if scores:
        clear = [s for s in scores if s.clear]
        lines += ["## Classes", "",
                  f"Each class's accuracy change against dense on its own images. \"clear\": the interval "
                  f"excludes 0 at the Bonferroni level for the {len(scores)} classes; "
                  f"{len(clear)} of {len(scores)} are clear here.", ""]
        lines += _table(("class", "images", "dense", label, "change, points [95%]", "clear", "images lost, and to"),
                        [(called(s), s.n, f"{100 * s.reference_accuracy:.2f}%", f"{100 * s.accuracy:.2f}%",
                          f"{100 * s.change.difference:+.2f} [{100 * s.change.ci[0]:+.2f}, "
                          f"{100 * s.change.ci[1]:+.2f}]", "yes" if s.clear else "",
                          lost_to_text(s) or "–")
                         for s in scores]) + [""]
        if lost_images:
            lost = paired_or_none(pruned, dense).b_only
            drawn = (f" ({SHEET_LIMIT} drawn, each class with its share)" if lost > SHEET_LIMIT else "")
            lines += [f"The {lost:,} image{'' if lost == 1 else 's'} lost against dense{drawn}, by class, each "
                      "with the class it is now predicted as:", "", f"![Images lost against dense]({lost_images})", ""]

    # --- layers ----------------------------------------------------------------------------
    lines += ["## Layers", "", *_table(("weight", "weights", "sparsity"),
                                       [(k, f"{int(result.masks[k].numel()):,}" if k in result.masks else "–",
                                         f"{100 * v:.2f}%") for k, v in result.layer_sparsity.items()]), ""]

    # --- solver ----------------------------------------------------------------------------
    finals = [f for f in info.get("final", []) if f.get("objective") is not None]
    if finals:
        f = finals[-1]
        floor = f.get("objective_lower_bound")
        lines += ["## Solver", "",
                  f"- Objective ½‖A(w − w̄)‖² + (λ/2)‖w − w̄‖² at the end: {f['objective']:.6g}; the "
                  f"backsolve on the magnitude mask of the same size: {f['magnitude_objective']:.6g}"
                  + (f"; no mask of this size goes below {floor:.6g}" if floor is not None else "") + ".",
                  f"- {int(f.get('iterations', 0))} swap steps, {'converged' if f.get('converged') else 'not converged'}"
                  + (f" (last of {len(finals)} stages)" if len(finals) > 1 else "") + ".", ""]
    if result.timings:
        lines += ["## Time", "", ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
                  + " (this machine).", ""]

    # --- export ----------------------------------------------------------------------------
    if export is not None:
        from core.export import describe_onnx_accuracy, describe_storage, human_bytes

        lines += ["## ONNX file", "",
                  f"- `{export.path}`: {export.onnx_bytes:,} bytes ({human_bytes(export.onnx_bytes)}), "
                  f"{human_bytes(export.compressed_bytes)} deflate-compressed.",
                  f"- Storage: {describe_storage(export)}.",
                  f"- Verified in onnxruntime: largest output difference against PyTorch {export.max_abs_diff:.2g}; "
                  f"opset {export.opset}.",
                  ]
        scored = describe_onnx_accuracy(export)
        if scored:
            lines.append(f"- Accuracy of the file: {scored}.")
        if getattr(export, "patterns", None):
            lines.append(f"- Its weights keep {', '.join(export.patterns)} in every block (read back from the file).")
        if latency is not None:
            file_lat, dense_lat = latency
            lines.append(f"- Time in onnxruntime on the CPU that wrote this report: {file_lat.describe()}; the dense "
                         f"model {dense_lat.median_ms:.3g} ms in the same rounds ({file_lat.median_ms / dense_lat.median_ms:.2f}×).")
        lines.append("")
    return "\n".join(lines)


def write_report(text: str, path: str, *, field: str | None = "--report") -> str:
    """Write ``text`` to ``path`` atomically (UTF-8); returns the path."""
    return str(write_atomic(path, text.encode("utf-8"), field=field))
