"""Runs view: every pruning run of this model and data, to compare, show again and export.

A new run replaces the one the sidebar shows; the earlier ones stay here (the most recent
``MAX_RUNS``, and no more than ``MAX_RUN_BYTES`` of pruned weights), so a result explored a
few runs ago is one double-click from being shown and exported again. The list belongs to the
loaded model and data and is cleared when either changes.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Sequence

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QFont, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.class_accuracy import (
    WORST_CLASS_COLUMNS,
    class_changes,
    describe_classes,
    worst_class_cells,
    worst_class_text,
)
from core.evaluate import paired_or_none
from core.pruning import METHOD_LABELS
from gui.flow_layout import FlowLayout
from gui.sweep_view import paired_text
from gui.table_columns import ColumnFitter

MAX_RUNS = 20  # runs kept in the list (the oldest go first)
MAX_RUN_BYTES = 2 * 1024**3  # pruned weights and masks kept in all, at most

COLUMNS = ("#", "Method", "Sparsity", "Accuracy", "95% interval", "vs dense, points", "Worst class, points",
           "vs chosen, points", "λ", "Seconds", "Settings")
VS_CHOSEN = COLUMNS.index("vs chosen, points")
WORST_CLASS = COLUMNS.index("Worst class, points")
# hidden in this order where the table is narrower than its columns (an empty one first: "vs
# chosen" until a run is chosen; the interval last, at 1024 px); a row's tooltip then gives them
OPTIONAL_COLUMNS = tuple(COLUMNS.index(c) for c in ("Seconds", "λ", "Worst class, points", "Settings",
                                                    "vs chosen, points", "95% interval"))
GRADIENT_METHODS = ("chita", "chita++", "obd", "woodfisher")


def result_bytes(result: Any) -> int:
    """Memory a kept run holds: its pruned weights and masks (the rest is small)."""
    total = 0
    for name in ("weights", "masks"):
        for t in (getattr(result, name, None) or {}).values():
            total += int(t.numel()) * int(t.element_size())
    return total


def keep_recent(runs: list[Any], max_runs: int = MAX_RUNS, max_bytes: int = MAX_RUN_BYTES) -> list[Any]:
    """The most recent runs that fit both limits (the newest is always kept)."""
    kept: list[Any] = []
    used = 0
    for outcome in reversed(runs):
        size = result_bytes(outcome.result)
        if kept and (len(kept) >= max_runs or used + size > max_bytes):
            break
        kept.append(outcome)
        used += size
    return kept[::-1]


def describe_run(outcome: Any) -> str:
    """"CHITA · 80% · refined 3 steps": what a run was, in a few words."""
    req = outcome.result.request
    text = f"{METHOD_LABELS.get(req.method, req.method)} · {100 * req.sparsity:.0f}%"
    if getattr(req, "pattern", ""):
        text += f" ({req.pattern})"
    if req.scope == "layer":
        text += " per layer"
    if req.refine_steps:
        text += f" · refined {req.refine_steps} steps"
    if getattr(outcome, "from_sweep", False):
        text += " · from the sweep"
    return text


def describe_settings(outcome: Any) -> str:
    """The request's settings beyond method and sparsity, in a few words ("512 samples · 10 stages")."""
    req = outcome.result.request
    info = getattr(outcome.result, "info", {}) or {}
    parts = []
    if req.method in GRADIENT_METHODS:
        parts.append(f"{int(info.get('samples', req.samples)):,} samples")
        if req.images_per_row > 1:
            parts.append(f"{info.get('images_per_row', req.images_per_row)} images per row")
    if req.method == "chita++":
        stages = len(info.get("schedule", ())) or req.stages
        parts.append(f"{stages} stages" if stages else "auto stages")
    if getattr(req, "pattern", ""):
        parts.append(f"pattern {req.pattern}")
    kept = [name for name, on in (("first", getattr(req, "keep_first", False)),
                                  ("last", getattr(req, "keep_last", False))) if on]
    if kept:
        parts.append(f"{' and '.join(kept)} layer dense")
    if req.layers:
        parts.append(f"{len(req.layers)} layers chosen")
    if req.refine_steps:
        parts.append(f"refine {req.refine_steps}")
    if req.update_scale != 1.0 and req.method in ("chita", "chita++", "woodfisher"):
        parts.append("update auto" if req.update_scale is None else f"update ×{req.update_scale:g}")
    if req.seed:
        parts.append(f"seed {req.seed}")
    if getattr(outcome, "from_sweep", False):
        parts.append("from the sweep")
    if getattr(outcome, "restored", False):
        parts.append("earlier session")
    return " · ".join(parts) or "–"


CSV_COLUMNS = ("run", "method", "sparsity", "scope", "accuracy", "accuracy_lo", "accuracy_hi", "loss",
               "n_eval", "change_vs_dense", "change_lo", "change_hi", "change_vs_magnitude",
               "vs_magnitude_lo", "vs_magnitude_hi", "nonzeros", "total", "lambda", "seconds",
               "onnx_bytes", "compressed_bytes", "sparse_onnx_bytes", "sparse_compressed_bytes", "float16_weights",
               *WORST_CLASS_COLUMNS, "settings")


def write_runs_csv(runs: Sequence[Any], dense: Any, path: str | Path, images: Any = None) -> None:
    """One line per run (oldest first, numbered as in the table): accuracy with its 95% interval,
    the change against dense and against magnitude at the same sparsity with their paired
    intervals (empty where not measured), sizes (ONNX with dense and with sparse storage, each as
    written and deflated; ``float16_weights``: whether they are the files' with float16 weights), λ,
    seconds, the class that lost most against dense on the evaluation ``images`` with its paired
    interval and the classes clearly lower (``core.class_accuracy``; empty without them), and
    settings."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_COLUMNS)
        for i, outcome in enumerate(runs):
            req, ev, res = outcome.result.request, outcome.eval, outcome.result
            d = paired_or_none(ev, dense)
            mag = getattr(outcome, "magnitude_eval", None)
            m = paired_or_none(ev, mag) if req.method != "magnitude" else None
            w.writerow([i + 1, req.method, req.sparsity, req.scope, ev.accuracy, *ev.accuracy_ci, ev.loss,
                        ev.n, *((d.difference, *d.ci) if d is not None else ("", "", "")),
                        *((m.difference, *m.ci) if m is not None else ("", "", "")),
                        res.nonzeros, res.total, "" if res.lam is None else res.lam, round(outcome.seconds, 3),
                        "" if outcome.onnx_bytes is None else outcome.onnx_bytes,
                        "" if outcome.compressed_bytes is None else outcome.compressed_bytes,
                        "" if outcome.sparse_bytes is None else outcome.sparse_bytes,
                        "" if outcome.sparse_compressed_bytes is None else outcome.sparse_compressed_bytes,
                        "" if outcome.onnx_bytes is None else int(bool(getattr(outcome, "sizes_float16", False))),
                        *worst_class_cells(class_changes(outcome.eval, dense, images)),
                        describe_settings(outcome)])


class RunsView(QWidget):
    """A table of the kept runs. ``show_requested(index)`` asks the window to show run ``index``
    again (double-click or *Show run*); ``export_requested(index)`` to export it;
    ``report_requested(index)`` to write its report."""

    show_requested = Signal(int)
    export_requested = Signal(int)
    report_requested = Signal(int)
    clear_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runs: list[Any] = []
        self.dense: Any = None
        self.images: Any = None  # the evaluation ImageSet: each run's worst class
        self.current: int | None = None
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.horizontalHeaderItem(5).setToolTip(
            "Change in accuracy against the dense model on the same images, with its paired 95% interval")
        self.table.horizontalHeaderItem(WORST_CLASS).setToolTip(
            "The class whose accuracy fell most against the dense model on the same images (clear: "
            "its paired interval excludes 0 after allowing for all the classes); the Classes tab draws them all")
        self.table.horizontalHeaderItem(VS_CHOSEN).setToolTip(
            "Each run's accuracy minus the chosen run's, on the same images, with its paired 95% interval: "
            "choose a run to compare the others with it")
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(True)
        self.table.setShowGrid(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        # no sideways scrolling: the least needed columns go, then the methods' names end in "…"
        self.columns = ColumnFitter(self.table, OPTIONAL_COLUMNS, names=COLUMNS, shrink=COLUMNS.index("Method"))
        self.show_button = QPushButton("Show run")
        self.show_button.setToolTip("Show the chosen run in the sidebar and the plots again (double-click a row)")
        self.export_button = QPushButton("Export ONNX…")
        self.export_button.setToolTip("Export the chosen run's pruned model")
        self.report_button = QPushButton("Save report…")
        self.report_button.setToolTip("Write the chosen run up in Markdown (File ▸ Save run report…)")
        self.clear_button = QPushButton("Clear list")
        self.save_csv = QPushButton("Save CSV…")
        self.save_csv.setToolTip("Write every run of the list to a CSV file: accuracy with its interval, "
                                 "the changes against dense and magnitude with theirs, sizes and settings")
        self.status = QLabel("Runs appear here as they finish; double-click one to show it again.")
        self.status.setObjectName("Muted")
        self.status.setWordWrap(True)
        buttons = FlowLayout(right=True)  # wraps where the window is narrow
        for b in (self.show_button, self.export_button, self.report_button, self.save_csv, self.clear_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.status)  # a line of its own: beside the buttons it widened the window
        layout.addLayout(buttons)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.table.cellDoubleClicked.connect(lambda row, _col: self._request(self.show_requested, row))
        self.show_button.clicked.connect(lambda: self._request(self.show_requested, self.selected()))
        self.export_button.clicked.connect(lambda: self._request(self.export_requested, self.selected()))
        self.report_button.clicked.connect(lambda: self._request(self.report_requested, self.selected()))
        self.clear_button.clicked.connect(self.clear_requested)
        self.save_csv.clicked.connect(lambda: self.save_csv_file())
        for key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):  # Enter on a chosen run shows it
            QShortcut(QKeySequence(key), self.table, lambda: self._request(self.show_requested, self.selected()),
                      context=Qt.ShortcutContext.WidgetShortcut)
        self._update_buttons()

    def changeEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        """A new font (presentation mode) draws the rows again: the shown run's bold font is the
        table's, made when the rows were."""
        super().changeEvent(event)
        if event.type() == QEvent.Type.FontChange and getattr(self, "runs", None):
            self.set_runs(self.runs, self.dense, self.current, self.images)

    def selected(self) -> int | None:
        """Index of the chosen run in :attr:`runs` (rows are listed newest first)."""
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        return len(self.runs) - 1 - rows[0].row()

    def set_runs(self, runs: Sequence[Any], dense: Any = None, current: int | None = None,
                 images: Any = None) -> None:
        """List ``runs`` (RunOutcomes, oldest first) newest first; ``current`` (an index) is the
        one the sidebar shows, drawn bold. The chosen run stays chosen. ``images``: the evaluation
        ImageSet the runs were scored on, for the worst class of each."""
        was = self.selected()
        keep = self.runs[was] if was is not None and was < len(self.runs) else None
        self.runs = list(runs)
        self.dense = dense
        self.images = images
        self.current = current
        self.table.setRowCount(len(self.runs))
        bold = QFont(self.table.font())
        bold.setBold(True)
        for row, index in enumerate(reversed(range(len(self.runs)))):
            outcome = self.runs[index]
            req, ev = outcome.result.request, outcome.eval
            d = paired_or_none(ev, dense)
            classes = class_changes(outcome.eval, dense, images)
            cells = [
                str(index + 1),
                describe_run(outcome).split(" · ", 1)[0] + (" (refined)" if req.refine_steps else ""),
                f"{100 * req.sparsity:.0f}%" + (f" ({req.pattern})" if getattr(req, "pattern", "") else
                                                " per layer" if req.scope == "layer" else ""),
                f"{100 * ev.accuracy:.1f}%",
                f"{100 * ev.accuracy_ci[0]:.1f}–{100 * ev.accuracy_ci[1]:.1f}",
                paired_text(d),
                worst_class_text(classes),
                "",  # vs chosen: filled when a run is chosen
                "–" if outcome.result.lam is None else f"{outcome.result.lam:.3g}",
                f"{outcome.seconds:.1f}",
                describe_settings(outcome),
            ]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if c not in (1, len(COLUMNS) - 1):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if index == current:
                    item.setFont(bold)
                    item.setToolTip("Shown in the sidebar now")
                if c == WORST_CLASS and classes:
                    text = describe_classes(classes)
                    item.setToolTip(text[:1].upper() + text[1:])
                self.table.setItem(row, c, item)
        self.table.blockSignals(True)
        self.table.clearSelection()
        if keep is not None and any(r is keep for r in self.runs):
            index = next(i for i, r in enumerate(self.runs) if r is keep)
            self.table.selectRow(len(self.runs) - 1 - index)
        self.table.blockSignals(False)
        if self.runs:
            self.status.setText(f"{len(self.runs)} run{'s' if len(self.runs) != 1 else ''} of this model and "
                                f"data (the most recent {MAX_RUNS} are kept); bold: the one shown now. "
                                "Double-click a run to show it again.")
        else:
            self.status.setText("Runs appear here as they finish; double-click one to show it again.")
        self._update_buttons()

    def save_csv_file(self, path: str | None = None) -> str | None:
        """Write the runs to ``path`` (asked for when None) with :func:`write_runs_csv`."""
        if not self.runs:
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Save the runs as CSV", "runs.csv", "CSV (*.csv)")
            if not path:
                return None
        write_runs_csv(self.runs, self.dense, path, self.images)
        self.status.setText(f"Saved {path}")
        return path

    def _request(self, signal: Any, index: int | None) -> None:
        if index is not None and 0 <= index < len(self.runs):
            signal.emit(index)

    def _compare_with_chosen(self) -> None:
        """Fill the "vs chosen" column: every run against the chosen one, paired on the images."""
        chosen = self.selected()
        base = self.runs[chosen].eval if chosen is not None else None
        self.table.horizontalHeaderItem(VS_CHOSEN).setText(
            f"vs run {chosen + 1}, points" if chosen is not None else "vs chosen, points")
        for row in range(self.table.rowCount()):
            index = len(self.runs) - 1 - row
            item = self.table.item(row, VS_CHOSEN)
            if item is None:
                continue
            if base is None:
                item.setText("")
            elif index == chosen:
                item.setText("—")
            else:
                d = paired_or_none(self.runs[index].eval, base)
                item.setText(paired_text(d))
                if d is not None:
                    item.setToolTip(f"{d.a_only:,} images only this run gets right, {d.b_only:,} only run "
                                    f"{chosen + 1}")

    def _update_buttons(self) -> None:
        self._compare_with_chosen()
        chosen = self.selected() is not None
        self.show_button.setEnabled(chosen)
        self.export_button.setEnabled(chosen)
        self.report_button.setEnabled(chosen)
        self.clear_button.setEnabled(bool(self.runs))
        self.save_csv.setEnabled(bool(self.runs))
