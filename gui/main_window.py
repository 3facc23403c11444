"""The main window: wires the views to background jobs over :mod:`core`.

State is kept as core results (a loaded model, a data bundle, PruneResults and EvalResults).
The loaded model is never modified; everything pruned is a copy made by
:func:`core.pruning.apply_result` inside a worker.
"""

from __future__ import annotations

import functools
import math
import re
import sys
from dataclasses import replace
from html import escape as html_escape
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PySide6.QtCore import QByteArray, QEvent, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QColor,
    QDragEnterEvent,
    QDropEvent,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLayout,
    QLineEdit,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QStatusBar,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from core.batchnorm import describe_batchnorm, has_batchnorm, scripted_batchnorm
from core.changed_images import changed_images, write_contact_sheet
from core.class_accuracy import class_changes, describe_classes
from core.data import bundle_named_by_model
from core.errors import StudioError
from core.evaluate import agreement, paired_or_none
from core.export import describe_onnx_accuracy, describe_storage, pruned_file_name
from core.fisher import rows_that_fit
from core.gradient_cache import GradientCache
from core.methods.selection import global_budget
from core.pruning import (
    MAX_REFINE_STEPS,
    METHOD_LABELS,
    METHODS,
    NEEDS_GRADIENTS,
    describe_update_scale,
    stages_hint,
)
from core.sparsity_pattern import parse_pattern
from core.weights_export import SUFFIXES as WEIGHT_SUFFIXES
from core.weights_export import pruned_metadata
from gui import dialogs, jobs, main_thread_gc, runs_store
from gui import settings as st
from gui.changed_images_view import ChangedImagesView
from gui.controls import ControlsPanel
from gui.flow_layout import FlowLayout
from gui.layer_table import LayerTable, fmt_int
from gui.plots import (
    ClassBars,
    ImportanceHeatMap,
    ImportanceHistogram,
    LayerOverview,
    ObjectivePlot,
    SensitivityBars,
    SparsityBars,
    WeightHistogram,
)
from gui.preview import PreviewPanel, fmt_bytes
from gui.runs_view import RunsView, describe_run, keep_recent
from gui.sweep_view import SweepView
from gui.theme import (
    PRESENTATION_SCALES,
    Theme,
    app_icon,
    apply_theme,
    make_theme,
)
from gui.workers import Task, TaskRunner

MODEL_SUFFIXES = (".pt", ".pth", ".pt2", ".ckpt", ".bin", ".pkl", ".pickle", ".ts", ".jit", ".safetensors")
DATA_SUFFIXES = (".npz", ".gz", ".idx", ".idx1-ubyte", ".idx3-ubyte")
DEFAULT_REFINE_STEPS = 3  # "Refine result" with the Refine box off
COMPARE_TITLE = "Refining the magnitude baseline"  # the background job behind "vs refined magnitude"
POINT_TITLE = "Measuring the sweep's point"  # magnitude baseline and ONNX sizes of a point shown from a sweep
COMPARE_FILE_TITLE = "Comparing with a model file"  # File ▸ Compare with a model file
LATENCY_TITLE = "Timing in ONNX Runtime"  # File ▸ Time the last export: the file and the dense model
SIZES_TITLE = "Measuring the ONNX file"  # a shown run's ONNX sizes after sparse storage or float16 is switched
DENSE_SIZES_TITLE = "Measuring the dense ONNX file"  # the dense model's, after float16 weights are switched
SWEEP_KEEP_BYTES = 1024**3  # a sweep keeps at most this much of its points' pruned weights, to show them
DATA_TITLE = "Loading data"  # the data-loading task (a model that loads first waits for it)
FILE_FILTER = ("Models (*.pt *.pth *.pt2 *.ckpt *.bin *.pkl *.ts *.onnx *.safetensors);;ONNX models (*.onnx);;"
               "All files (*)")


def method_label(method: str) -> str:
    """Display name of a method key."""
    return METHOD_LABELS.get(method, method)


def refinement_note(result) -> str:
    """" Refined: k of T steps, held-out loss a → b." for a run that refined its weights, else ""."""
    steps = result.info.get("refinement") or []
    if not steps:
        return ""
    taken = refinement_taken(result)
    images = int(result.info.get("samples", 0)) * int(result.info.get("refine_images_per_row", 1))
    return (f" Refined: {taken} of {len(steps)} step{'s' if len(steps) != 1 else ''} taken "
            f"(gradients from {images:,} images), held-out "
            f"loss {steps[0]['holdout_loss_before']:.3f} → {steps[-1]['holdout_loss_after']:.3f}.")


def batchnorm_note(result) -> str:
    """" BatchNorm: …" (what the run did with BatchNorm's statistics), or "" without BatchNorm."""
    note = describe_batchnorm(result.info)
    return f" {note}" if note else ""


def refinement_taken(result) -> int:
    """How many refinement steps the result took (steps asked but refused are not counted)."""
    return sum(1 for step in (result.info.get("refinement") or []) if step.get("accepted"))


def optimality_note(result) -> str:
    """" On the local quadratic no mask of this size beats this one by more than X%." for a
    CHITA or CHITA++ run (its last solve, against the floor it reports), else ""."""
    final = (result.info.get("final") or [None])[-1]
    if not final or final.get("objective_lower_bound") is None or not final.get("objective"):
        return ""
    gap = max(0.0, (final["objective"] - final["objective_lower_bound"]) / final["objective"])
    where = " (last stage)" if result.request.method == "chita++" else ""
    which = f"with this {result.request.pattern} pattern" if getattr(result.request, "pattern", "") else "of this size"
    return (f" On the local quadratic{where} no mask {which} beats this one by more than "
            f"{100 * gap:.2g}%.")


def update_scale_note(result) -> str:
    """" Update: α = … of the weight update …" when the run scaled its update (or auto kept it
    whole), else ""."""
    text = describe_update_scale(result.info)
    return f" Update: {text}" if text else ""


def sparsity_label(request: Any) -> str:
    """"80%", or the pattern for an N:M run ("2:4")."""
    return request.pattern if getattr(request, "pattern", "") else f"{100 * request.sparsity:.0f}%"


def pattern_note(result: Any) -> str:
    """" 2:4 in all 1,616 blocks; conv1.weight left dense (…)." for an N:M run, else ""."""
    info = (getattr(result, "info", None) or {}).get("pattern")
    if not info:
        return ""
    dense = list(info.get("dense_layers") or [])
    m = str(info["pattern"]).split(":")[1]
    return (f" {info['pattern']} in all {int(info['blocks']):,} blocks of {m} inputs"
            + (f"; {', '.join(dense[:3])}{', …' if len(dense) > 3 else ''} left dense (input count not a "
               f"multiple of {m})" if dense else "") + ".")


def kept_dense_note(kept: list[str]) -> str:
    """" fc1.weight left dense." for the prunable weights a result left whole (the Keep dense
    boxes, the table's choice), else ""."""
    if len(kept) > 4:
        return f" {len(kept)} layers left dense ({', '.join(kept[:3])}, …)."
    return f" {', '.join(kept)} left dense." if kept else ""


def samples_note(result) -> str:
    """", 1,000 samples" or, with mini-batch rows, ", 1,000 samples of 13 images each" (and what
    was asked when the calibration set could not give that many rows or images per row); "" for
    a method that took no gradients (magnitude)."""
    if result.request.method not in NEEDS_GRADIENTS and not result.request.refine_steps:
        return ""
    rows = int(result.info.get("samples", result.request.samples))
    b = int(result.info.get("images_per_row", 1))
    text = f", {rows:,} samples of {b} images each" if b > 1 else f", {rows:,} samples"
    if "samples_asked" in result.info:
        text += f" ({int(result.info['samples_asked']):,} asked: the calibration set holds " \
                f"{int(result.info['calibration_images']):,} images, " \
                f"{int(result.info.get('holdout', 0)):,} of them held out)"
    asked = int(result.info.get("images_per_row_asked", b))
    if asked > b:
        text += f" ({asked} images per row asked: the calibration set has too few images)"
    return text


def _run_key(outcome: Any) -> str:
    """A run's item data in the Classes tab's chooser: its result's identity, which outlives the
    run's number (runs are renumbered when old ones are dropped)."""
    return f"run:{id(outcome.result)}"


class StageLabel(QLabel):
    """The status bar's label. QStatusBar hides it under a message only implicitly, and a new font
    (F11's presentation mode) rebuilds the bar's layout, which shows it again under the message:
    the two texts overlap. Shown under a message, it has the message shown again, which hides it."""

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        if self._message():
            QTimer.singleShot(0, self._hide_again)

    def _message(self) -> str:
        bar = self.parentWidget()
        return bar.currentMessage() if isinstance(bar, QStatusBar) else ""

    def _hide_again(self) -> None:
        message = self._message()
        if message and self.isVisible():
            bar = self.parentWidget()
            bar.clearMessage()
            bar.showMessage(message, 15000)


class MainWindow(QMainWindow):
    """CHITA Studio's main window.

    Signals for scripts and tests: ``ready`` (model, data, dense baseline, importance and the
    first preview are in), ``preview_updated``, ``run_finished(RunOutcome)``,
    ``export_finished(ExportReport)``, ``sweep_finished(SweepResult)``, ``idle`` (no job left).
    """

    ready = Signal()
    preview_updated = Signal()
    run_finished = Signal(object)
    comparison_finished = Signal(object)  # a refined run's outcome once its refined baseline is in
    run_cancelled = Signal()
    export_finished = Signal(object)
    latency_finished = Signal(object)
    file_compared = Signal(object)  # (source, EvalResult, zero share) of File ▸ Compare with a model file  # (the export's Latency, the dense model's) in ONNX Runtime
    weights_saved = Signal(object)  # a core.weights_export.WeightsReport
    sweep_finished = Signal(object)
    sensitivity_finished = Signal(object)  # a core.sensitivity.SensitivityResult
    points_exported = Signal(object)  # {(method, sparsity): ExportReport or None} of "Export ONNX…" in the Sweep tab
    run_shown = Signal(object)  # a kept run shown again from the Runs tab (RunOutcome)
    runs_restored = Signal(int)  # runs of this model and data given back from an earlier session (0: none)
    idle = Signal()

    def __init__(self, settings: QSettings | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        main_thread_gc.acquire()  # no cyclic collection in worker threads while this window lives
        self._gc_released = False
        self.settings = settings if settings is not None else st.make_settings()
        self.runner = TaskRunner(self)
        # G of the last run, reused by the next run on the same model, data and sample
        self.gradient_cache = GradientCache()
        self.runner.task_started.connect(self._on_task_started)
        self.runner.task_ended.connect(self._on_task_ended)
        self.theme: Theme = make_theme("light")
        # core state
        self.session: jobs.Session | None = None
        self.bundle: Any = None
        self.data_source: tuple[str, str | None] = ("digits", None)
        self.baseline: jobs.Baseline | None = None
        self._sidebar_normal: int | None = None  # the sidebar's width before presentation mode widened it
        self._unfolded = False  # the user asked for all the pruning settings in a window that folds them
        self._fold_timer = QTimer(self)  # a resize settles before the sidebar is measured again
        self._fold_timer.setSingleShot(True)
        self._fold_timer.setInterval(50)
        self._fold_timer.timeout.connect(self._fit_folding)
        self._fold_timer.timeout.connect(self._fit_table_if_cut)
        # an arrow key held down in the layer table: the plots follow the last row chosen, once the
        # repeats queued during a large layer's redraw are through (LayerTable.repeating)
        self._layer_timer = QTimer(self)
        self._layer_timer.setSingleShot(True)
        self._layer_timer.setInterval(20)
        self._layer_timer.timeout.connect(self._show_chosen_layer)
        self.kept_layers: set[str] = set()  # weights the user keeps dense (the table's context menu)
        self.own_sparsity = 0.0  # the loaded model's own zeros over its prunable weights
        self.least_sparsity = 0.0  # the least sparsity (whole percent) those zeros allow
        self.runs: list[jobs.RunOutcome] = []  # this model's and data's runs, oldest first (Runs tab)
        self._live_run: object | None = None  # the run whose CHITA++ stages the Objective tab draws
        self.saliency: dict[str, np.ndarray] | None = None
        self.preview: jobs.MagnitudePreview | None = None
        self.outcome: jobs.RunOutcome | None = None
        self.shown: str = "none"  # which result the views show: "none" | "preview" | "run"
        self.last_export: Any = None
        self.last_export_result: Any = None
        self.last_latency: tuple[str, Any] | None = None  # (file, (its Latency, the dense model's))
        self._gen = 0  # bumps when the model or the data changes; older results are dropped
        self._sweep_gen: int | None = None  # the _gen of the sweep the Sweep tab shows
        self._runs_key: str | None = None  # fingerprint of this model and data: where their runs are saved
        self._ready_emitted = False
        self._preview_task: Task | None = None
        self._weights: dict[str, Any] = {}
        self._foreground: Task | None = None
        self.persist = True  # save settings on close

        self.setWindowTitle("CHITA Studio")
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self._build_views()
        self._build_actions()
        self._build_status()
        self._connect()
        self._restore_settings()

    # ======================================================================================
    # construction

    def _build_views(self) -> None:
        # -- sidebar ------------------------------------------------------------------------
        self.model_label = QLabel("No model")
        self.model_label.setObjectName("Headline")
        self.model_label.setWordWrap(True)
        self.model_info = QLabel("")
        self.model_info.setObjectName("Muted")
        self.model_info.setWordWrap(True)
        self.data_info = QLabel("")
        self.data_info.setObjectName("Muted")
        self.data_info.setWordWrap(True)
        self.open_button = QPushButton("Open model…")
        self.data_button = QPushButton("Choose data…")
        buttons = QHBoxLayout()
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.data_button)
        model_box = QGroupBox("Model and data")
        mb = QVBoxLayout(model_box)
        mb.addWidget(self.model_label)
        mb.addWidget(self.model_info)
        mb.addWidget(self.data_info)
        mb.addLayout(buttons)

        self.controls = ControlsPanel()
        self.preview_panel = PreviewPanel()
        self.preview_panel.delta_shown.connect(self._fold_timer.start)  # the fold's target moved
        self.export_button = QPushButton("Export ONNX…  (Ctrl+E)")
        self.export_button.setEnabled(False)
        # refine the last run's kept weights without pruning again, before exporting it
        self.refine_button = QPushButton("Refine result")
        self.refine_button.setEnabled(False)
        self.refine_button.setToolTip(f"Up to {DEFAULT_REFINE_STEPS} Gauss–Newton steps (or the Refine box's "
                                      "number) on the last run's kept weights, mask fixed, each kept only if "
                                      "held-out calibration loss falls; no pruning again (Ctrl+Shift+F)")
        finish = QHBoxLayout()
        finish.addWidget(self.refine_button)
        finish.addWidget(self.export_button, 1)

        sidebar = QWidget()
        sidebar.setObjectName("Sidebar")
        sl = QVBoxLayout(sidebar)
        sl.setContentsMargins(8, 8, 8, 8)
        sl.setSpacing(8)
        sl.addWidget(model_box)
        sl.addWidget(self.controls)
        sl.addWidget(self.preview_panel)
        sl.addStretch(1)
        self.sidebar_scroll = QScrollArea()
        self.sidebar_scroll.setWidgetResizable(True)
        self.sidebar_scroll.setWidget(sidebar)
        self.sidebar_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        self.sidebar_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.sidebar_scroll.setMinimumWidth(360)
        # Refine and Export stay in view below the scrolling sidebar, whatever the window height
        pinned = QWidget()
        pinned.setObjectName("Sidebar")
        pinned.setLayout(finish)
        finish.setContentsMargins(8, 4, 8, 8)
        self.sidebar_pane = QWidget()
        pane = QVBoxLayout(self.sidebar_pane)
        pane.setContentsMargins(0, 0, 0, 0)
        pane.setSpacing(0)
        pane.addWidget(self.sidebar_scroll, 1)
        pane.addWidget(pinned)

        # -- model tab ----------------------------------------------------------------------
        self.table = LayerTable()
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter layers…")
        self.filter_edit.setClearButtonEnabled(True)
        self.prunable_only = QCheckBox("Prunable weights only")
        self.prunable_only.setChecked(True)
        table_box = QGroupBox("Layers")
        tb = QVBoxLayout(table_box)
        row = FlowLayout()  # the box on a line of its own where the pane is narrow
        row.addWidget(self.filter_edit)
        row.addWidget(self.prunable_only)
        tb.addLayout(row)
        tb.addWidget(self.table)

        self.overview = LayerOverview()
        self.sparsity_bars = SparsityBars()
        self.overview_tabs = QTabWidget()
        self.overview_tabs.setObjectName("OverviewTabs")
        self.overview_tabs.addTab(self.overview, "Spread")
        self.overview_tabs.addTab(self.sparsity_bars, "Sparsity")
        self.objective_plot = ObjectivePlot()
        self.overview_tabs.addTab(self.objective_plot, "Objective")
        self.overview_tabs.setTabToolTip(2, "CHITA's mask search on the local quadratic: its objective "
                                            "against the magnitude mask's backsolve, and the floor no "
                                            "mask of that size goes below")
        self.sensitivity_bars = SensitivityBars()
        self.overview_tabs.addTab(self.sensitivity_bars, "Sensitivity")
        self.overview_tabs.setTabToolTip(3, "Each layer pruned alone by magnitude, the others whole: its "
                                            "increase in loss on calibration images (Run ▸ Layer sensitivity). "
                                            "Costly layers are worth keeping dense (right-click in the table)")
        self.class_bars = ClassBars()
        self.class_bars.on_class = lambda text: self.statusBar().showMessage(text, 15000)
        self.changed_view = ChangedImagesView()
        self.class_bars.on_pick = lambda score: self.changed_view.set_label(score.label)
        self.changed_view.on_save = self.save_changed_images_dialog
        self.class_against = QComboBox()
        self.class_against.addItem("the dense model", "dense")
        self.class_against.addItem("magnitude at the same sparsity", "magnitude")
        self.class_against.setToolTip("What each class's change is measured against, on the same images: "
                                      "the dense model, magnitude pruning at the run's sparsity (which "
                                      "classes the method rescues), or another run of the Runs tab")
        self.class_against.currentIndexChanged.connect(self._on_class_against)
        # runs' long names must not widen the tab: the box keeps a modest width and elides
        self.class_against.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.class_against.setMinimumContentsLength(12)  # the layer table's room in presentation mode
        classes_tab = QWidget()
        ct = QVBoxLayout(classes_tab)
        ct.setContentsMargins(0, 4, 0, 0)
        against_row = QHBoxLayout()
        self.against_label = QLabel("Change against")  # "Against" in presentation mode (room for the table)
        against_row.addWidget(self.against_label)
        against_row.addWidget(self.class_against, 1)
        ct.addLayout(against_row)
        classes_split = QSplitter(Qt.Orientation.Vertical)
        classes_split.addWidget(self.class_bars)
        classes_split.addWidget(self.changed_view)
        classes_split.setStretchFactor(0, 3)
        classes_split.setStretchFactor(1, 2)
        classes_split.setSizes([200, 140])
        self.classes_splitter = classes_split
        ct.addWidget(classes_split, 1)
        self.overview_tabs.addTab(classes_tab, "Classes")
        self.overview_tabs.setTabToolTip(4, "Each class's accuracy change against the dense model on the "
                                            "same evaluation images, with its paired 95% interval: which "
                                            "classes pruning costs (coloured where the change is clear "
                                            "after allowing for the number of classes)")

        top = QSplitter(Qt.Orientation.Horizontal)
        top.addWidget(table_box)
        top.addWidget(self.overview_tabs)
        top.setStretchFactor(0, 0)  # the table keeps its columns' width (_fit_table); the plots
        top.setStretchFactor(1, 1)  # take what the window gains or loses
        top.setSizes([800, 420])
        self.top_splitter = top

        self.layer_title = QLabel("Select a layer")
        self.layer_title.setObjectName("Headline")
        self.layer_detail = QLabel("")
        self.layer_detail.setObjectName("Muted")
        # long details must never widen the window (presentation fonts): clip instead
        self.layer_detail.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.log_button = QToolButton()
        self.weight_hist = WeightHistogram()
        self.importance_hist = ImportanceHistogram()
        self.heatmap = ImportanceHeatMap()
        plots = QSplitter(Qt.Orientation.Horizontal)
        plots.addWidget(self.weight_hist)
        plots.addWidget(self.importance_hist)
        plots.addWidget(self.heatmap)
        plots.setSizes([400, 400, 460])
        self.plot_splitter = plots
        bottom = QWidget()
        bl = QVBoxLayout(bottom)
        bl.setContentsMargins(0, 4, 0, 0)
        head = QHBoxLayout()
        head.addWidget(self.layer_title)
        head.addWidget(self.layer_detail, 1)
        head.addWidget(self.log_button)
        bl.addLayout(head)
        bl.addWidget(plots, 1)

        model_tab = QSplitter(Qt.Orientation.Vertical)
        model_tab.addWidget(top)
        model_tab.addWidget(bottom)
        model_tab.setStretchFactor(0, 4)
        model_tab.setStretchFactor(1, 5)
        model_tab.setSizes([380, 480])
        self.model_splitter = model_tab

        self.sweep_view = SweepView()
        self.tabs = QTabWidget()
        self.tabs.addTab(model_tab, "Model")
        self.tabs.addTab(self.sweep_view, "Sweep")
        self.runs_view = RunsView()
        self.tabs.addTab(self.runs_view, "Runs")

        main = QSplitter(Qt.Orientation.Horizontal)
        main.addWidget(self.sidebar_pane)
        main.addWidget(self.tabs)
        main.setStretchFactor(0, 0)
        main.setStretchFactor(1, 1)
        main.setSizes([380, 1180])
        main.setCollapsible(0, False)
        self.main_splitter = main
        central = QWidget()
        cl = QVBoxLayout(central)
        cl.setContentsMargins(0, 0, 8, 0)
        cl.addWidget(main)
        self.setCentralWidget(central)
        self.plots = [self.weight_hist, self.importance_hist, self.heatmap, self.overview, self.sparsity_bars,
                      self.objective_plot, self.sensitivity_bars, self.class_bars]

    def _action(self, text: str, slot: Callable[..., Any], shortcut: Any = None, *, checkable: bool = False,
                tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            if isinstance(shortcut, (list, tuple)):
                action.setShortcuts([QKeySequence(s) for s in shortcut])
            else:
                action.setShortcut(QKeySequence(shortcut))
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.setCheckable(checkable)
        if tip:
            action.setStatusTip(tip)
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        bar = self.menuBar()
        f = bar.addMenu("&File")
        self.act_open = self._action("&Open model…", lambda: self.open_model_dialog(), QKeySequence.StandardKey.Open)
        f.addAction(self.act_open)
        self.recent_menu = f.addMenu("Open &recent")
        demo_menu = f.addMenu("Open &demo")
        for name in ("digits_mlp", "digits_cnn"):
            demo_menu.addAction(self._action(f"{name} (trained on scikit-learn digits)",
                                             lambda _=False, n=name: self.load_demo(n)))
        self.act_data = self._action("Choose &data…", lambda: self.choose_data_dialog(), "Ctrl+D")
        f.addAction(self.act_data)
        f.addSeparator()
        self.act_export = self._action("&Export pruned ONNX…", lambda: self.export_dialog(), "Ctrl+E")
        self.act_export.setEnabled(False)
        f.addAction(self.act_export)
        self.act_save_weights = self._action(
            "Save pruned &weights…", lambda: self.save_weights_dialog(), "Ctrl+Shift+S",
            tip="Save the last run's whole state_dict (pruned weights are exact zeros) as .safetensors or .pt, "
                "for fine-tuning in PyTorch")
        self.act_save_weights.setEnabled(False)
        f.addAction(self.act_save_weights)
        self.act_latency = self._action(
            "&Time the last export in ONNX Runtime", lambda: self.time_last_export(),
            tip="Run the last exported file and the dense model in ONNX Runtime on this CPU, in "
                "alternating rounds (about 3 s), and compare their time per image")
        self.act_latency.setEnabled(False)
        f.addAction(self.act_latency)
        self.act_report = self._action(
            "Save run &report…", lambda: self.save_report_dialog(),
            tip="Write the shown run up in Markdown: settings, accuracy with intervals, the classes, each "
                "layer's sparsity, the solver and, if it was exported, the ONNX file (to ship beside it)")
        self.act_report.setEnabled(False)
        f.addAction(self.act_report)
        self.act_compare_file = self._action(
            "Compare with a model &file…", lambda: self.compare_file_dialog(),
            tip="Score another model file (a pruned ONNX file exported before, or from another tool) on "
                "the same evaluation images: its change against the dense model and the shown run, "
                "paired, how often they agree, and its classes")
        self.act_compare_file.setEnabled(False)
        f.addAction(self.act_compare_file)
        self.act_sparse = self._action(
            "&Sparse storage in ONNX files", self.set_sparse_storage, checkable=True,
            tip="Store weights that are mostly zeros as ONNX sparse initializers: a smaller file with the "
                "same values, which ONNX Runtime reads (other runtimes may not)")
        f.addAction(self.act_sparse)
        self.act_float16 = self._action(
            "Float16 &weights in ONNX files", self.set_float16_weights, checkable=True,
            tip="Store each weight matrix in float16, read through a Cast to float32: about half the file, "
                "computed in float32 as before, each weight rounded to float16 (the export scores the file "
                "in ONNX Runtime)")
        f.addAction(self.act_float16)
        f.addSeparator()
        f.addAction(self._action("&Quit", self.close, QKeySequence.StandardKey.Quit))

        r = bar.addMenu("&Run")
        self.act_run = self._action("&Run pruning", lambda: self.run_pruning(), "Ctrl+R")
        self.act_cancel = self._action("&Cancel", self.cancel_or_escape, "Esc")
        self.act_refine = self._action("Re&fine last run", lambda: self.refine_last_run(), "Ctrl+Shift+F",
                                       tip="Refine the last run's kept weights (mask fixed) without pruning again")
        self.act_refine.setEnabled(False)
        r.addAction(self.act_run)
        r.addAction(self.act_refine)
        r.addAction(self.act_cancel)
        r.addSeparator()
        r.addAction(self._action("Sparsity +1%", lambda: self.controls.step_sparsity(1), "Ctrl+Up"))
        r.addAction(self._action("Sparsity −1%", lambda: self.controls.step_sparsity(-1), "Ctrl+Down"))
        r.addAction(self._action("Sparsity +10%", lambda: self.controls.step_sparsity(10), "Ctrl+PgUp"))
        r.addAction(self._action("Sparsity −10%", lambda: self.controls.step_sparsity(-10), "Ctrl+PgDown"))
        r.addSeparator()
        methods = r.addMenu("&Method")
        for i, m in enumerate(METHODS, start=1):
            methods.addAction(self._action(method_label(m), lambda _=False, m=m: self.controls.set_method(m),
                                           f"Ctrl+{i}" if i <= 9 else None))
        r.addSeparator()
        r.addAction(self._action("Run &sweep", lambda: self._start_sweep_from_view(), "Ctrl+Shift+R"))
        r.addAction(self._action(
            "&Layer sensitivity", lambda: self.run_sensitivity(), "Ctrl+Shift+L",
            tip="Prune each layer alone by magnitude at the slider's sparsity and measure the loss it costs on "
                "calibration images"))

        v = bar.addMenu("&View")
        self.act_presentation = self._action("&Presentation mode", self.set_presentation, "F11", checkable=True)
        self.act_dark = self._action("&Dark theme", self.set_dark, "Ctrl+T", checkable=True)
        self.act_log = self._action("&Log counts in histogram", self.weight_hist.set_log, "Ctrl+L", checkable=True)
        v.addAction(self.act_presentation)
        v.addAction(self.act_dark)
        v.addAction(self.act_log)
        v.addSeparator()
        v.addAction(self._action("&Model tab", lambda: self.tabs.setCurrentIndex(0), "Ctrl+Shift+M"))
        v.addAction(self._action("S&weep tab", lambda: self.tabs.setCurrentIndex(1), "Ctrl+Shift+W"))
        v.addAction(self._action("R&uns tab", lambda: self.tabs.setCurrentIndex(2), "Ctrl+Shift+U"))
        self.act_log.setIconText("log counts")
        self.log_button.setDefaultAction(self.act_log)

        h = bar.addMenu("&Help")
        h.addAction(self._action("&Keyboard shortcuts", self.show_shortcuts, "F1"))
        h.addAction(self._action("&About CHITA Studio", self.show_about))

    def _build_status(self) -> None:
        sb = self.statusBar()
        sb.setSizeGripEnabled(False)
        self.stage_label = StageLabel("Starting…")
        self.stage_label.setMinimumWidth(200)
        self.stage_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.progress.setFixedWidth(260)
        self.progress.setMaximumHeight(16)
        self.eta_label = QLabel("")
        self.eta_label.setObjectName("Muted")
        self.eta_label.setMinimumWidth(90)
        self.status_cancel = QPushButton("Cancel (Esc)")
        self.status_cancel.setEnabled(False)
        self.status_cancel.hide()
        sb.addWidget(self.stage_label, 1)
        sb.addPermanentWidget(self.progress)
        sb.addPermanentWidget(self.eta_label)
        sb.addPermanentWidget(self.status_cancel)
        self.progress.hide()

    def _connect(self) -> None:
        self.open_button.clicked.connect(lambda: self.open_model_dialog())
        self.data_button.clicked.connect(lambda: self.choose_data_dialog())
        self.export_button.clicked.connect(lambda: self.export_dialog())
        self.refine_button.clicked.connect(lambda: self.refine_last_run())
        self.controls.preview_requested.connect(self.request_preview)
        self.controls.run_requested.connect(self.run_pruning)
        self.controls.unfold_requested.connect(lambda: self._set_unfolded(True))
        self.controls.fold_requested.connect(lambda: self._set_unfolded(False))
        self.controls.settings_changed.connect(self._on_settings_changed)
        self.controls.cancel_button.clicked.connect(self.cancel_foreground)
        self.status_cancel.clicked.connect(self.cancel_foreground)
        self.table.layer_selected.connect(self._on_layer_selected)
        self.table.keep_dense_toggled.connect(self.toggle_keep_dense)
        self.table.prune_all_requested.connect(lambda: self.set_kept_layers(set()))
        self.filter_edit.textChanged.connect(self._apply_filter)
        self.prunable_only.toggled.connect(self._apply_filter)
        self.sweep_view.run_requested.connect(self.run_sweep)
        self.runs_view.show_requested.connect(self.show_run)
        self.runs_view.export_requested.connect(self._export_run)
        self.runs_view.report_requested.connect(self._report_run)
        self.runs_view.clear_requested.connect(self.clear_runs)
        self.sweep_view.cancel_requested.connect(self.cancel_foreground)
        self.sweep_view.point_requested.connect(self.show_sweep_point)
        self.sweep_view.export_requested.connect(self.export_points_dialog)
        # a window resized while another tab was shown left the layer table unmeasured
        self.tabs.currentChanged.connect(lambda i: QTimer.singleShot(0, self._fit_table_if_cut) if i == 0 else None)

    # ======================================================================================
    # settings and theme

    def _restore_settings(self) -> None:
        s = self.settings
        self.controls.load_settings(s)
        self.sweep_view.load_settings(s)
        self.runs_view.columns.restore_choices(st.read(s, "runs/columns", [], list))
        self._sweep_pattern_note()
        self.act_log.setChecked(st.read(s, "view/log_counts", False, bool))
        self.weight_hist.set_log(self.act_log.isChecked())
        self.prunable_only.setChecked(st.read(s, "view/prunable_only", True, bool))
        dark = st.read(s, "view/theme", "light") == "dark"
        presentation = st.read(s, "view/presentation", False, bool)
        self.act_dark.setChecked(dark)
        self.act_presentation.setChecked(presentation)
        self.act_sparse.setChecked(st.read(s, "export/sparse_storage", False, bool))
        self.preview_panel.set_sparse_storage(self.act_sparse.isChecked())
        self.act_float16.setChecked(st.read(s, "export/float16", False, bool))
        self.preview_panel.set_float16(self.act_float16.isChecked())
        i = self.class_against.findData(st.read(s, "view/classes_against", "dense"))
        self.class_against.setCurrentIndex(max(0, i))
        kind = st.read(s, "view/changed_images", "lost")
        self.changed_view.set_kind(kind if kind in ("lost", "gained") else "lost")
        geometry = s.value("window/geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        else:
            self.resize(1560, 960)
        for key, splitter in (("window/main_splitter", self.main_splitter), ("window/model_splitter", self.model_splitter),
                              ("window/top_splitter", self.top_splitter), ("window/plot_splitter", self.plot_splitter),
                              ("window/classes_splitter", self.classes_splitter)):
            state = s.value(key)
            if isinstance(state, QByteArray) and not state.isEmpty():
                splitter.restoreState(state)
        self._apply_filter()
        self._refresh_recent()
        self.apply_theme()

    def save_settings(self) -> None:
        """Write every remembered control and view option to QSettings."""
        s = self.settings
        self.controls.save_settings(s)
        self.sweep_view.save_settings(s)
        s.setValue("runs/columns", self.runs_view.columns.choices())
        s.setValue("view/log_counts", self.act_log.isChecked())
        s.setValue("view/prunable_only", self.prunable_only.isChecked())
        s.setValue("view/theme", "dark" if self.act_dark.isChecked() else "light")
        s.setValue("view/presentation", self.act_presentation.isChecked())
        s.setValue("export/sparse_storage", self.act_sparse.isChecked())
        s.setValue("export/float16", self.act_float16.isChecked())
        if not self.isFullScreen():
            s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/main_splitter", self.main_splitter.saveState())
        s.setValue("window/model_splitter", self.model_splitter.saveState())
        s.setValue("window/top_splitter", self.top_splitter.saveState())
        s.setValue("window/plot_splitter", self.plot_splitter.saveState())
        s.setValue("window/classes_splitter", self.classes_splitter.saveState())
        s.setValue("view/changed_images", self.changed_view.kind)
        s.sync()

    def apply_theme(self) -> None:
        """Apply the light/dark theme and the presentation font scale to the app and the plots:
        in presentation mode the largest of ``PRESENTATION_SCALES`` at which the window's least
        width fits the screen (1.4× fonts made it 1,111 px at least, wider than a 1024×768
        projector, which cut its right side off)."""
        room = self._screen_width() if self.act_presentation.isChecked() else None
        if room is None:
            self._apply_theme_at(PRESENTATION_SCALES[0] if self.act_presentation.isChecked() else 1.0)
            return

        def fits(scale: float) -> bool:
            self._apply_theme_at(scale)
            QApplication.sendPostedEvents(None, QEvent.Type.LayoutRequest)  # the new fonts' sizes now
            return self.minimumSizeHint().width() <= room

        if fits(PRESENTATION_SCALES[0]):
            return
        # a larger scale never makes the window narrower: bisect the others (a third of a
        # second each), and end on the largest that fits, or the smallest
        lo, hi = 1, len(PRESENTATION_SCALES) - 1  # the answer's index is in [lo, hi]
        applied = None
        while lo < hi:
            mid = (lo + hi) // 2
            applied = PRESENTATION_SCALES[mid]
            if fits(applied):
                hi = mid
            else:
                lo = mid + 1
        if applied != PRESENTATION_SCALES[lo]:
            self._apply_theme_at(PRESENTATION_SCALES[lo])
            # lay out at once: the window kept the larger scale's least width (1,034 px against
            # 1,013 on a 1024-pixel screen with ResNet20) until the next pass of the event loop,
            # and a window sized in between stayed that wide, its right side off the screen
            QApplication.sendPostedEvents(None, QEvent.Type.LayoutRequest)

    def _screen_width(self) -> int | None:
        """Width of the screen the window is on (presentation mode fills it), None if unknown."""
        screen = self.screen() or QApplication.primaryScreen()
        return screen.geometry().width() if screen is not None else None

    def _apply_theme_at(self, scale: float) -> None:
        """Apply the theme with presentation mode's fonts at ``scale``."""
        self.theme = make_theme("dark" if self.act_dark.isChecked() else "light",
                                self.act_presentation.isChecked(), scale)
        app = QApplication.instance()
        if isinstance(app, QApplication):
            apply_theme(app, self.theme)
        for plot in self.plots:
            plot.apply_theme(self.theme)
        self.sweep_view.apply_theme(self.theme)
        self.table.set_bar_color(self.theme.palette.accent)
        self.table.source.muted = QColor(self.theme.palette.muted)
        self._set_compact_sidebar(self.theme.presentation)
        self.against_label.setText("Against" if self.theme.presentation else "Change against")
        # pages not shown keep the minimum sizes of the fonts they were last laid out with: a
        # window that left presentation mode could not shrink back (1644 px wide at least, after
        # a grab in it polished the Sweep tab's row of methods in large type)
        for widget in self.findChildren(QWidget):
            widget.updateGeometry()
        for layout in self.findChildren(QLayout):
            layout.invalidate()
        self._fit_sidebar()
        QTimer.singleShot(0, self._fit_table)

    def _set_compact_sidebar(self, on: bool) -> None:
        """Presentation mode keeps Run and the Preview in view: the model box shows its name and
        data only (File ▸ Open model… and Choose data… stay on the menu and their shortcuts), and
        the pruning box folds its rows past Scope (:meth:`_fit_folding`)."""
        for w in (self.model_info, self.open_button, self.data_button):
            w.setVisible(not on)
        self._fit_folding()

    def _fit_folding(self) -> None:
        """Fold the pruning box's rows past Scope into a one-line summary where, with them shown,
        the Preview's accuracy change (with its interval) would be below the sidebar's fold (a
        768-pixel-high laptop screen), and always in presentation mode; fold Pattern, Scope and
        Keep dense too where that is not enough, and in presentation mode then the data's lines
        in the model box and the folded rows' line down to its link (a 1280×720 projector).
        Where no folding brings the change into view, the least that brings the accuracy.
        Unless the user asked for all the settings (the summary's link; "Fewer settings" folds
        them again)."""
        c = self.controls
        content = self.sidebar_scroll.widget()
        presenting = self.theme.presentation
        panel = self.preview_panel

        def fits(level: int, shown: QWidget) -> bool:
            """Whether ``shown`` is in view with the rows folded to ``level`` (0: none,
            1: past Scope, 2: past Sparsity, 3: and the model box's data lines, 4: and the
            folded rows' line down to its link, in presentation mode); nothing is painted in
            between."""
            c.set_compact(level > 0, deep=level > 1, terse=level > 3)
            self.data_info.setVisible(level < 3)
            QApplication.sendPostedEvents(None, QEvent.Type.LayoutRequest)  # lay the rows out now
            content.layout().activate()
            return shown.mapTo(content, shown.rect().bottomLeft()).y() <= self.sidebar_scroll.viewport().height()

        targets = ((panel.delta,) if panel.delta.text() else ()) + (panel.after_acc,)
        if self._unfolded:
            self.data_info.setVisible(True)
            c.set_compact(False, can_fold=presenting or not fits(0, targets[0]))
            return
        levels = (1, 2, 3, 4) if presenting else (0, 1, 2)
        for shown in targets:
            for level in levels:
                if fits(level, shown):
                    return

    def _set_unfolded(self, on: bool) -> None:
        self._unfolded = bool(on)
        self._fit_folding()

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        """Once shown, follow the window to another screen: presentation mode fits its fonts to
        the new screen's width (a laptop's window moved to the projector)."""
        super().showEvent(event)
        handle = self.windowHandle()
        if handle is not None and not getattr(self, "_screen_watched", False):
            handle.screenChanged.connect(self._screen_changed)
            self._screen_watched = True

    def _screen_changed(self, *_args: object) -> None:
        if self.act_presentation.isChecked():
            self.apply_theme()

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        """A window of another height may fold or unfold the pruning box (:meth:`_fit_folding`),
        and one of another width give the layer table its columns (:meth:`_fit_table_if_cut`)."""
        super().resizeEvent(event)
        self._fold_timer.start()

    def _fit_sidebar(self) -> None:
        """Keep the whole sidebar visible: its width follows its content (fonts change it)."""
        content = self.sidebar_scroll.widget()
        bar = self.sidebar_scroll.verticalScrollBar().sizeHint().width()
        width = max(int(340 * self.theme.scale), content.minimumSizeHint().width() + bar + 2)
        if width == self.sidebar_scroll.minimumWidth():
            return
        self.sidebar_scroll.setMinimumWidth(width)
        sizes = self.main_splitter.sizes()
        total = sum(sizes)
        if total > width and sizes[0] < width:
            self.main_splitter.setSizes([width, total - width])

    def _fit_table(self) -> None:
        """Give the layer table the width of its columns if the overview keeps ≥ 400 px (its five
        tab names and a few of the Classes tab's images; 360 px in presentation mode), and where
        even the shortest columns do not fit beside that, as much as they need of the overview's
        width down to its least.

        Where the columns are wider than that, the table hides the dense model's Sparsity-now
        column, then Type, then Params, then Shape (:meth:`LayerTable.fit_columns`; the line above
        the plots gives them for the chosen layer), so that *After* stays in view; in presentation
        mode they stay hidden so that the large fonts still fit."""
        self.table.compact = self.theme.presentation
        box = self.table.parentWidget()
        margins = box.contentsMargins().left() + box.contentsMargins().right() + 12
        chrome = self.table.verticalScrollBar().sizeHint().width() + 2 * self.table.frameWidth() + margins
        sizes = self.top_splitter.sizes()
        total = sum(sizes)
        if total <= 0:
            self.table.fit_columns()
            return
        limit = total - (360 if self.table.compact else 400)
        wanted = self.table.fit_columns(limit - chrome)
        if wanted + chrome > limit:  # After cut even with the columns hidden and the names short
            # (a 1024-pixel screen): the overview gives up room, down to its least width
            limit = max(limit, total - self.overview_tabs.minimumSizeHint().width())
        needed = min(wanted + chrome, limit)
        if needed > 0:
            self.top_splitter.setSizes([needed, total - needed])
            QTimer.singleShot(0, lambda: self._correct_table_width(wanted, limit))

    def _correct_table_width(self, wanted: int, limit: int) -> None:
        """Once laid out, give the table's pane what the estimate of its frame, margins and
        scroll bar missed, so that the ``wanted`` columns' width fits its viewport exactly."""
        sizes = self.top_splitter.sizes()
        new = min(sizes[0] + wanted - self.table.viewport().width(), limit)
        if new > 0 and new != sizes[0]:
            self.top_splitter.setSizes([new, sum(sizes) - new])

    def _fit_table_if_clipped(self) -> None:
        """Widen the table when its columns no longer fit (e.g. the 'After (…)' header grew), or
        when it hides some of them for want of room (the header may have grown first)."""
        self.table.fit_columns()
        if self.table.hides_for_room() or self.table.horizontalHeader().length() > self.table.viewport().width():
            self._fit_table()

    def _fit_table_if_cut(self) -> None:
        """After a window resize (presentation mode going full screen), give the layer table
        room again where it shortens the names or its columns run past its edge."""
        t = self.table
        if t.names_shortened or t.horizontalHeader().length() > t.viewport().width():
            self._fit_table()

    def set_sparse_storage(self, on: bool) -> None:
        """Exports (a run's and a sweep's) store mostly-zero weights as ONNX sparse initializers;
        the preview's ONNX size follows (File ▸ Sparse storage in ONNX files, remembered)."""
        self.act_sparse.setChecked(bool(on))
        self.preview_panel.set_sparse_storage(bool(on))
        self._measure_sizes()

    def set_float16_weights(self, on: bool) -> None:
        """Exports (a run's and a sweep's) store their weight matrices in float16 behind Casts to
        float32 (File ▸ Float16 weights in ONNX files, remembered); the preview's ONNX sizes, the
        dense model's and the shown run's, are measured again so (in the background)."""
        self.act_float16.setChecked(bool(on))
        self.preview_panel.set_float16(bool(on))
        self._measure_sizes()
        self._measure_dense_sizes()

    def _measure_dense_sizes(self) -> None:
        """Measure the dense model's ONNX sizes again where they are not those the float16 setting
        shows (``jobs.dense_sizes_job``, in the background)."""
        baseline, half = self.baseline, self.act_float16.isChecked()
        if (baseline is None or self.session is None or self.bundle is None or baseline.sizes_float16 == half
                or any(t.title == DENSE_SIZES_TITLE for t in self.runner.running())):
            return

        def done(sizes: jobs.Baseline) -> None:
            if self.baseline is baseline:  # the same model and data
                self._on_baseline(replace(sizes, eval=baseline.eval), measured_only=True)
            self._measure_dense_sizes()  # switched again meanwhile

        self._submit(jobs.dense_sizes_job, self.session.light_model, self.bundle, float16=half,
                     title=DENSE_SIZES_TITLE, lane="light", foreground=False, on_done=done)

    def _update_outcome(self, result: Any, **fields: Any) -> None:
        """Set ``fields`` on the run of ``result`` (a background job's measurement arriving),
        in the Runs tab and where it is shown; matched by result, so that two jobs finishing on
        the same run keep both their fields."""
        self.runs = [replace(r, **fields) if r.result is result else r for r in self.runs]
        if self.outcome is not None and self.outcome.result is result:
            self.outcome = next((r for r in self.runs if r.result is result), replace(self.outcome, **fields))
            self._refresh_after()
        self._refresh_runs()

    def _measure_sizes(self) -> None:
        """Measure the shown run's ONNX sizes where they are not those the settings show: the
        sparse-storage file deflated (its run, made with sparse storage off, skipped that), or
        the files with (or without) float16 weights (``jobs.sizes_job``, in the background)."""
        outcome = self.outcome
        sparse, half = self.act_sparse.isChecked(), self.act_float16.isChecked()
        if (outcome is None or self.session is None or self.bundle is None or outcome.onnx_bytes is None
                or not jobs.needs_sizes(outcome, sparse, half)
                or any(t.title == SIZES_TITLE for t in self.runner.running())):
            return

        def done(sized: jobs.RunOutcome) -> None:
            self._update_outcome(outcome.result, **{k: getattr(sized, k) for k in jobs.SIZE_FIELDS})
            self._measure_sizes()  # another run may have been shown, or a setting switched, meanwhile

        self._submit(jobs.sizes_job, self.session.loaded.model, self.bundle, outcome, sparse_deflate=sparse,
                     float16=half, title=SIZES_TITLE, lane="light", foreground=False, on_done=done)

    def set_dark(self, on: bool) -> None:
        """Switch between the dark and the light theme."""
        self.act_dark.setChecked(bool(on))
        self.apply_theme()
        self.settings.setValue("view/theme", "dark" if on else "light")

    def set_presentation(self, on: bool) -> None:
        """Full screen with larger fonts (F11; 1.4× where the window fits the screen with them,
        :meth:`apply_theme`), or back to the normal window."""
        was_on = self.theme.presentation
        self.act_presentation.setChecked(bool(on))
        if on and not was_on:
            self._sidebar_normal = self.main_splitter.sizes()[0]
        if on:
            self.showFullScreen()
        elif self.isFullScreen():
            self.showNormal()
        self.apply_theme()
        self.settings.setValue("view/presentation", bool(on))
        if not on and was_on:  # the large fonts widened the sidebar: give it back
            width, self._sidebar_normal = self._sidebar_normal or 0, None
            QTimer.singleShot(0, lambda: self._restore_sidebar(width))

    def _restore_sidebar(self, width: int) -> None:
        """The sidebar back to ``width`` (or the least its content needs, where the app started in
        presentation mode), the rest to the tabs."""
        sizes = self.main_splitter.sizes()
        width = max(width, self.sidebar_scroll.minimumWidth())
        if sizes and sizes[0] > width:
            self.main_splitter.setSizes([width, sum(sizes) - width])
            self._fit_table()

    def show_for_settings(self) -> None:
        """Show the window, full screen if presentation mode was on last time."""
        if self.act_presentation.isChecked():
            self.showFullScreen()
        else:
            self.show()

    def _refresh_recent(self) -> None:
        self.recent_menu.clear()
        files = st.recent_files(self.settings)
        for path in files:
            action = self.recent_menu.addAction(path)
            action.triggered.connect(lambda _=False, p=path: self.open_model(p))
        if not files:
            none = self.recent_menu.addAction("(none yet)")
            none.setEnabled(False)
        else:
            self.recent_menu.addSeparator()
            clear = self.recent_menu.addAction("Clear list")
            clear.triggered.connect(self._clear_recent)

    def _clear_recent(self) -> None:
        self.settings.setValue("recent/models", [])
        self._refresh_recent()

    # ======================================================================================
    # jobs plumbing

    def _submit(self, fn: Callable[..., Any], *args: Any, title: str, lane: str = "heavy", foreground: bool = True,
                on_done: Callable[[Any], None] | None = None, on_failed: Callable[[BaseException], None] | None = None,
                on_cancelled: Callable[[], None] | None = None, on_partial: Callable[[Any], None] | None = None,
                keep_gen: bool = True, **kwargs: Any) -> Task:
        """Run ``fn`` in a worker; callbacks run on the UI thread, dropped if the model changed.
        A foreground heavy task first cancels a background baseline comparison, which would
        otherwise hold the lane (an export right after "Refine result" measures it again)."""
        if foreground and lane == "heavy":
            for running in self.runner.running(foreground=False):
                if running.title == COMPARE_TITLE:
                    running.cancel()
        gen = self._gen
        task = Task(fn, *args, title=title, lane=lane, foreground=foreground,
                    pass_partial=on_partial is not None, **kwargs)

        def current() -> bool:
            return not keep_gen or gen == self._gen

        if on_done is not None:
            task.finished.connect(lambda result: on_done(result) if current() else None)
        task.failed.connect(lambda exc: (on_failed or self._show_failure)(exc) if current() else None)
        if on_cancelled is not None:
            task.cancelled.connect(lambda: on_cancelled() if current() else None)
        if on_partial is not None:
            task.partial.connect(lambda result: on_partial(result) if current() else None)
        if foreground:
            task.progress.connect(lambda stage, frac, eta, msg, t=task: self._on_progress(t, stage, frac, eta, msg))
        return self.runner.submit(task)

    def _show_failure(self, exc: BaseException) -> None:
        dialogs.show_exception(self, exc)

    def _on_task_started(self, task: Task) -> None:
        if task.foreground:
            self._foreground = task
            self.progress.setRange(0, 0)  # busy until the first report
            self.progress.show()
            self.stage_label.setText(f"{task.title}…")
            self.eta_label.setText("")
        self._update_busy()

    def _on_task_ended(self, task: Task) -> None:
        if task is self._foreground:
            self._foreground = None
            rest = self.runner.running(foreground=True)
            if rest:
                self._foreground = rest[-1]
                self.stage_label.setText(f"{rest[-1].title}…")
            else:
                self.progress.hide()
                self.eta_label.setText("")
                state = {"cancelled": "Cancelled — nothing was changed.", "failed": f"{task.title} failed."}
                self.stage_label.setText(state.get(task.state, f"{task.title}: done in {task.seconds:.1f} s."))
        self._update_busy()
        if not self.runner.running():
            QTimer.singleShot(0, self._emit_idle)

    def _emit_idle(self) -> None:
        if not self.runner.running():
            self.idle.emit()

    def _on_progress(self, task: Task, stage: str, fraction: float, eta: float | None, message: str) -> None:
        if task is not self._foreground:
            return
        if fraction < 0:  # unknown length: busy indicator
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * fraction))
        text = stage if not message or stage.endswith(message) else f"{stage} — {message}"
        self.stage_label.setText(text)
        self.stage_label.setToolTip(text)
        self.eta_label.setText("" if eta is None or not math.isfinite(eta) else f"ETA {self._fmt_seconds(eta)}")

    @staticmethod
    def _fmt_seconds(s: float) -> str:
        if s < 60:
            return f"{s:.0f} s"
        return f"{int(s // 60)} min {int(s % 60):02d} s"

    def _update_busy(self) -> None:
        fg = self.runner.running(foreground=True)
        busy = bool(fg)
        running_kinds = {t.title for t in fg}
        self.status_cancel.setEnabled(busy)
        self.status_cancel.setVisible(busy)
        self.controls.set_busy(any(t.title.startswith(("Pruning", "Refining")) for t in fg))
        self.sweep_view.set_busy("Sweep" in running_kinds)
        ready = self.session is not None and self.bundle is not None
        self.act_run.setEnabled(ready)
        can_export = ready and self.outcome is not None
        self.act_export.setEnabled(can_export)
        self.act_save_weights.setEnabled(can_export)
        self.act_report.setEnabled(can_export and self.baseline is not None)
        self.act_compare_file.setEnabled(ready and self.baseline is not None
                                         and not any(t.title == COMPARE_FILE_TITLE for t in fg))
        self.act_latency.setEnabled(ready and self.last_export is not None
                                    and not any(t.title == LATENCY_TITLE for t in fg))
        self.export_button.setEnabled(can_export)
        refining = any(t.title.startswith("Refining") for t in fg)
        self.act_refine.setEnabled(can_export and not refining)
        self.refine_button.setEnabled(can_export and not refining)

    def cancel_foreground(self) -> None:
        """Cancel the running foreground jobs (load, run, sweep, export)."""
        for task in self.runner.running(foreground=True):
            task.cancel()
        if self.runner.running(foreground=True):
            self.stage_label.setText("Cancelling…")

    def cancel_or_escape(self) -> None:
        """Esc: cancel what runs; with nothing running, leave presentation mode."""
        if self.runner.running(foreground=True):
            self.cancel_foreground()
        elif self.act_presentation.isChecked():
            self.set_presentation(False)

    # ======================================================================================
    # loading

    def start(self, *, demo: str | None = "digits_mlp", model: str | None = None, data: str | None = None,
              arch: str | None = None, preset: str | None = None) -> None:
        """Load what the command line asked for, else the built-in demo."""
        if model:
            self.open_model(model, arch=arch)
            if data:
                self.load_data(data, preset)
            # without data, _ensure_matching_data loads the data last used with the model's preset
        elif data:
            self.load_demo(demo or "digits_mlp", with_data=False)
            self.load_data(data, preset)
        else:
            self.load_demo(demo or "digits_mlp")

    def load_demo(self, name: str = "digits_mlp", *, with_data: bool = True) -> None:
        """Load (training on first use) a built-in demo model and, by default, the digits data."""
        self._submit(jobs.load_demo_job, name, title=f"Loading demo {name}",
                     on_done=lambda res: self._on_demo_loaded(res, with_data), keep_gen=False)

    def _on_demo_loaded(self, res: tuple[jobs.Session, Any], with_data: bool) -> None:
        session, bundle = res
        self._set_session(session)
        if with_data:
            self.data_source = ("digits", None)
            self._set_bundle(bundle)

    def open_model_dialog(self) -> None:
        """Ask for a model file (Ctrl+O)."""
        start = str(Path(st.recent_files(self.settings)[0]).parent) if st.recent_files(self.settings) else ""
        path, _ = QFileDialog.getOpenFileName(self, "Open model", start, FILE_FILTER)
        if path:
            self.open_model(path)

    def open_model(self, path: str, *, arch: str | None = None, trust_pickle: bool = False) -> None:
        """Load a model file in the background; asks for the architecture or for pickle trust when needed."""
        self._submit(jobs.load_model_job, path, arch=arch, trust_pickle=trust_pickle,
                     title=f"Loading {Path(path).name}", keep_gen=False,
                     on_done=lambda session: self._on_model_loaded(session, path),
                     on_failed=lambda exc: self._on_model_failed(exc, path, arch, trust_pickle))

    def _on_model_loaded(self, session: jobs.Session, path: str) -> None:
        self._refresh_recent_with(path)
        self._set_session(session)
        self._ensure_matching_data()

    def _refresh_recent_with(self, path: str) -> None:
        if Path(path).exists():
            st.add_recent_file(self.settings, str(Path(path).resolve()))
            self._refresh_recent()

    def _on_model_failed(self, exc: BaseException, path: str, arch: str | None, trusted: bool) -> None:
        if isinstance(exc, StudioError) and exc.field == "arch" and not arch:
            from core.architectures import available_architectures

            # the core names the built-in or torchvision network whose keys the file has
            match = re.search(r"keys match (?:the built-in|torchvision's) '([^']+)'", str(exc))
            names = available_architectures()
            guess = match.group(1) if match else None
            if guess and guess not in names:
                names = [guess, *names]
            chosen = dialogs.ask_item(
                self, "Architecture needed",
                f"{Path(path).name} holds only weights (a state_dict).\n"
                "Choose the network they belong to, or type a torchvision name or package.module:Class\n"
                "(a module:Class name imports and runs that Python code).",
                names, guess)
            if chosen:
                self.open_model(path, arch=chosen, trust_pickle=trusted)
            return
        if isinstance(exc, StudioError) and "--trust-pickle" in (exc.fix or "") and not trusted:
            yes = dialogs.ask_yes_no(
                self, "Load a pickled model?",
                f"{Path(path).name} contains pickled Python objects.\n\n"
                "WARNING: loading it EXECUTES CODE from the file, with your permissions. Only say yes "
                "if you trust where this file came from.\n\nLoad it anyway?",
                warning=True)
            if yes:
                self.open_model(path, arch=arch, trust_pickle=True)
            return
        dialogs.show_exception(self, exc, "Could not open the model")

    def choose_data_dialog(self) -> None:
        """Ask for the data source and normalisation preset (Ctrl+D)."""
        from gui.data_dialog import DataDialog

        source, preset = self.data_source
        dlg = DataDialog(self, source, preset, self._class_names_for(source))
        if dlg.exec():
            source, preset, names = dlg.choice()
            if source:
                self.load_data(source, preset, names)

    def _class_names_for(self, source: str) -> str:
        """The class names remembered for a data source ("" for none)."""
        return st.read(self.settings, f"data/class_names/{source}", "")

    def load_data(self, source: str, preset: str | None = None, class_names: str | None = None) -> None:
        """Load images and labels in the background; ``class_names`` (comma-separated or a file;
        None: those remembered for ``source``) name the labels and are remembered on success."""
        if preset is None and self.session is not None:
            preset = self.session.loaded.preset
        names = self._class_names_for(source) if class_names is None else class_names
        download = source in ("mnist", "cifar10")

        def done(bundle: Any) -> None:
            self.settings.setValue(f"data/class_names/{source}", names)
            self._on_data_loaded(bundle, source, preset)

        self._submit(jobs.load_data_job, source, preset=preset, download=download, class_names=names,
                     title=DATA_TITLE, keep_gen=False, on_done=done)

    def _on_data_loaded(self, bundle: Any, source: str, preset: str | None) -> None:
        self.data_source = (source, preset)
        key = getattr(bundle, "preset", None) or preset
        if key:
            self.settings.setValue(f"data/source_for/{key}", source)
        self._set_bundle(bundle)

    def _ensure_matching_data(self) -> None:
        """After a model loads: if the current data cannot fit it, load remembered data for its preset."""
        loaded = self.session.loaded if self.session else None
        if loaded is None:
            return
        shape = tuple(loaded.input_shape)
        if self.bundle is not None and (not shape or tuple(self.bundle.input_shape) == shape):
            return
        if any(t.title == DATA_TITLE for t in self.runner.running()):
            return  # data are on their way (asked for with the model): they decide
        preset = loaded.preset
        remembered = st.read(self.settings, f"data/source_for/{preset}", "") if preset else ""
        if preset == "digits":
            remembered = "digits"
        if remembered:
            self.load_data(remembered, preset)
        else:
            hint = f"This model needs {'data' if self.bundle is None else 'other data'}: File ▸ Choose data… (Ctrl+D)"
            # after the loading task's own "done" line, which would otherwise replace it
            QTimer.singleShot(0, lambda: self.stage_label.setText(hint))

    def _set_session(self, session: jobs.Session) -> None:
        self._gen += 1
        self.session = session
        self._weights = {k: v for k, v in session.loaded.model.named_parameters()}
        self.saliency = None
        self.gradient_cache.clear()  # the previous model's gradients: free their memory
        self.kept_layers = set()  # a choice of layers belongs to its model
        self.table.kept = set()
        rows = [r for r in session.summary.rows if r.prunable]  # zeros counted off the UI thread
        total = sum(r.params for r in rows)
        zeros = sum(r.zeros for r in rows)
        self.own_sparsity = zeros / total if total else 0.0  # a model pruned before: its zeros stay
        # the least whole percent a run can ask (core.pruning refuses less: its budget would keep zeros)
        self.least_sparsity = next((pct / 100 for pct in range(int(100 * self.own_sparsity), 100)
                                    if global_budget(total, pct / 100) <= total - zeros), 0.99) if zeros else 0.0
        self._reset_results()
        loaded = session.loaded
        name = Path(loaded.source).name if loaded.format != "demo" else loaded.source.replace("demo:", "")
        self.model_label.setText(name)
        self.setWindowTitle(f"{name} — CHITA Studio")
        self.controls.set_batchnorm(has_batchnorm(loaded.model), scripted_batchnorm(loaded.model))
        self._fold_timer.start()  # the model box's lines change the height above the Preview
        summary = session.summary
        # computed again from the memory available whenever the note is updated, not only now
        self.controls.set_samples_limit(functools.partial(rows_that_fit, sum(r.params for r in summary.rows
                                                                              if r.prunable)))
        prunable = summary.prunable_keys
        self._show_model_info()
        self.table.source.set_rows(summary.rows)
        self._apply_filter()
        first = next((r.key for r in summary.rows if r.prunable), summary.rows[0].key if summary.rows else None)
        if first:
            self.table.select_key(first)
        QTimer.singleShot(0, self._fit_table)
        self.overview.set_data(prunable, summary.percentiles)
        key = self.table.current_key()
        if key:
            self._on_layer_selected(key)
        if self.bundle is not None:  # the model may name the data's classes (ImageNet's, by torchvision's weights)
            self.bundle = bundle_named_by_model(self.bundle, loaded.class_names)
        self._maybe_analyse()

    def _show_model_info(self) -> None:
        loaded, summary = self.session.loaded, self.session.summary
        n_prunable = sum(r.params for r in summary.rows if r.prunable)
        shape = "×".join(str(s) for s in loaded.input_shape) or "unknown"
        kept = [what for what, present in (  # what an ONNX file's export keeps (core.onnx_import)
            ("channels last", getattr(loaded.model, "input_permutation", None) is not None),
            ("in float16", getattr(loaded.model, "float16_io", False))) if present]
        said = [f"the file takes it {' and '.join(kept)}"] if kept else []
        if getattr(loaded.model, "float16_weights", False) and "in float16" not in kept:  # float16 inside only
            said.append("its weights are float16")
        elif getattr(loaded.model, "float16_storage", False):  # float16 weights read as float32
            said.append("its weights are stored in float16 and computed in float32")
        if said:
            said[-1] += "; exports keep that"
        batch = getattr(loaded.model, "fixed_batch", None)
        if batch:  # the graph runs on any batch (core.onnx_import._with_batch); exports leave it open
            said.append(f"the file fixes the batch at {batch}; exports leave it open")
        held = getattr(summary, "patterns", None) or {}
        if held:  # pruned to N:M before (the sparsest pattern held: 1:4 implies 2:4 implies 4:8)
            said.append(f"its weights keep {next(iter(held))} in every block")
        if said:
            shape += f" ({'; '.join(said)})"
        self.model_info.setText(
            f"{loaded.format}{' · ' + loaded.arch if loaded.arch else ''} · input {shape}\n"
            f"{fmt_int(summary.total_params)} parameters · {len(summary.prunable_keys)} prunable tensors "
            f"({fmt_int(n_prunable)} weights)")

    def _set_bundle(self, bundle: Any) -> None:
        self._gen += 1
        if self.session is not None:  # classes named by the model where the data has only WordNet IDs
            bundle = bundle_named_by_model(bundle, self.session.loaded.class_names)
        self.bundle = bundle
        self.saliency = None
        self.gradient_cache.clear()
        self._reset_results()
        n_cal, n_eval = len(bundle.calibration.y), len(bundle.evaluation.y)
        self.data_info.setText(
            f"Data: {bundle.name} · preset {getattr(bundle, 'preset', None) or 'custom'}\n"
            f"{n_cal:,} calibration / {n_eval:,} evaluation images")
        self.controls.samples.setToolTip(
            f"n: per-sample gradients for the Fisher approximation (this data has {n_cal:,} calibration images)")
        self._maybe_analyse()

    def _reset_results(self) -> None:
        self._save_runs()  # the previous model's and data's runs, for when they are loaded again
        self._runs_key = None
        self.last_export = None  # timed against the dense model it was pruned from: not this one
        self.last_export_result = None
        self.last_latency = None
        if self._preview_task is not None:
            self._preview_task.cancel()
            self._preview_task = None
        self.baseline = None
        self.preview = None
        self.outcome = None
        self.runs = []
        self.runs_view.set_runs([])
        self.sweep_view.forget_points()  # their weights belong to the previous model or data
        self._live_run = None  # a run on the previous model or data is drawn no more
        self.shown = "none"
        self._ready_emitted = False
        self.preview_panel.clear()
        self.table.source.set_after({}, "")
        self.sparsity_bars.set_data([], [])
        self.sensitivity_bars.set_data([], {}, None)  # measured on the previous model or data
        self.class_bars.set_data(())
        self.objective_plot.set_result(None)
        self.overview.set_threshold(None)
        self._render_layer()
        self._update_busy()

    def _maybe_analyse(self) -> None:
        """With both a model and data: dense baseline, importance, and the first preview."""
        if self.session is None or self.bundle is None:
            return
        self._measure_dense()
        self._submit(jobs.saliency_job, self.session.loaded.model, self.bundle.calibration,
                     arch=self.session.loaded.arch, title="Importance (Fisher saliency)", lane="heavy", foreground=False,
                     on_done=self._on_saliency, on_failed=self._on_saliency_failed)
        self.request_preview(self.controls.sparsity())
        self._update_busy()

    def _on_baseline(self, baseline: jobs.Baseline, measured_only: bool = False) -> None:
        """Show the dense model's accuracy and sizes (``measured_only``: its sizes measured again,
        nothing else new)."""
        self.baseline = baseline
        if measured_only:
            self.preview_panel.set_dense_sizes(baseline.onnx_bytes, baseline.compressed_bytes, baseline.sparse_bytes,
                                               baseline.sparse_compressed_bytes, baseline.sizes_float16)
            return
        self._refresh_runs()
        keys = [k for k in self.session.summary.prunable_keys if k in self._weights] if self.session else []
        nonzeros = sum(int((self._weights[k] != 0).sum()) for k in keys) if self.session else None
        total = sum(self._weights[k].numel() for k in keys)
        self.preview_panel.set_dense(baseline.eval, nonzeros, baseline.onnx_bytes, baseline.compressed_bytes,
                                     baseline.sparse_bytes, baseline.sparse_compressed_bytes, baseline.sizes_float16)
        # a model that was pruned before (a pruned export opened again) has zeros of its own
        self.preview_panel.set_dense_sparsity(1 - nonzeros / total if nonzeros is not None and total else None)
        self._refresh_after()
        self._check_ready()
        self._measure_dense_sizes()  # float16 switched while it was measured

    def _on_baseline_failed(self, exc: BaseException) -> None:
        if isinstance(exc, jobs.OtherImageSize) and self.session is not None and self.use_other_size(exc.shape):
            return
        self.preview_panel.caption.setText("The model and the data do not fit together: choose other data (Ctrl+D).")
        dialogs.show_exception(self, exc, "Model and data do not fit")

    def use_other_size(self, shape: tuple[int, ...]) -> bool:
        """Offer to run the model on the data's image size (it runs there; the baseline job checked
        with a forward pass); on yes the session takes that input shape and is measured again."""
        loaded = self.session.loaded
        old, new = ("×".join(str(d) for d in s_) for s_ in (loaded.input_shape, shape))
        name = Path(loaded.source).name if loaded.format != "demo" else loaded.source
        if not dialogs.ask_yes_no(
                self, "Use the model at another image size?",
                f"{name} is set up for {old} images; these images are {new}. The network runs on "
                f"them (it pools over whatever size it gets, as torchvision's ResNets do).\n\n"
                f"Use it on {new} images? The dense accuracy on this data will show whether it works; "
                "an export takes this size too."):
            return False
        self.session = replace(self.session, loaded=replace(loaded, input_shape=tuple(shape)))
        self._show_model_info()
        self._measure_dense()
        return True

    def _measure_dense(self) -> None:
        """The dense model's accuracy and ONNX sizes on the current data, in the background."""
        self.preview_panel.caption.setText("Measuring the dense model…")
        self._submit(jobs.baseline_job, self.session, self.bundle, float16=self.act_float16.isChecked(),
                     title="Dense accuracy", lane="light",
                     foreground=False, on_done=self._on_baseline, on_failed=self._on_baseline_failed)

    def _on_saliency(self, saliency: dict[str, np.ndarray]) -> None:
        self.saliency = saliency
        self._render_layer()
        self._check_ready()

    def _on_saliency_failed(self, exc: BaseException) -> None:
        self.saliency = {}
        self.importance_hist.set_message(f"Importance unavailable: {exc}")
        self._render_layer()
        self._check_ready()

    def _check_ready(self) -> None:
        if self._ready_emitted:
            return
        if self.baseline is not None and self.saliency is not None and self.preview is not None:
            self._ready_emitted = True
            self.stage_label.setText("Ready. Move the slider for a live magnitude preview; Ctrl+R runs the method.")
            self.ready.emit()
            if self.persist:
                self._restore_runs()

    # ======================================================================================
    # runs between sessions (gui.runs_store)

    def _restore_runs(self) -> None:
        """Look for runs saved for these weights and images, in the background."""
        if self.session is None or self.bundle is None:
            return
        self._submit(runs_store.restore_job, self.session.loaded.model, self.bundle,
                     str(runs_store.runs_folder(self.settings)), title="Looking for earlier runs", lane="light",
                     foreground=False, on_done=self._on_runs_restored,
                     on_failed=lambda exc: self.statusBar().showMessage(
                         f"Earlier runs could not be restored: {exc}", 10000))

    def _on_runs_restored(self, found: tuple[str, list]) -> None:
        key, earlier = found
        self._runs_key = key
        if earlier:
            self.runs = keep_recent([*earlier, *self.runs])  # they came first; runs made meanwhile stay newest
            self._refresh_runs()
            self.statusBar().showMessage(
                f"Restored {len(earlier)} run{'s' if len(earlier) != 1 else ''} of this model and data from an "
                "earlier session: Runs tab (Ctrl+Shift+U).", 10000)
        self.runs_restored.emit(len(earlier))

    def _save_runs(self, *, wait: bool = False) -> None:
        """Save this model's and data's runs before another model or data replaces them (in the
        background on the light lane, which also restores runs, so a reload of the same model
        finds them; up to 512 MiB of weights take ~2 s to write) or, with ``wait``, now (on close,
        after the workers have stopped). Never raises: a failure is reported on stderr and in the
        status bar."""
        if not self.persist or self._runs_key is None:
            return
        folder, key, runs = runs_store.runs_folder(self.settings), self._runs_key, list(self.runs)
        if not wait:
            self._submit(runs_store.save_runs, folder, key, runs, title="Saving runs", lane="light",
                         foreground=False, keep_gen=False, cancellable=False, pass_progress=False,
                         on_failed=self._on_runs_not_saved)
            return
        try:
            runs_store.save_runs(folder, key, runs)
        except Exception as exc:  # noqa: BLE001 - closing must not fail on a full disk
            self._on_runs_not_saved(exc)

    def _on_runs_not_saved(self, exc: BaseException) -> None:
        print(f"chita-studio: the runs could not be saved: {exc}", file=sys.stderr)
        self.statusBar().showMessage(f"The runs could not be saved: {exc}", 10000)

    # ======================================================================================
    # preview and runs

    def _on_settings_changed(self) -> None:
        self._sweep_pattern_note()
        self._refresh_after()

    def _sweep_pattern_note(self) -> None:
        """Under the Pruning panel's pattern the sweep compares methods at its sparsity: the
        Sparsities field does not apply, and says why."""
        pattern = self.controls.pattern_value()
        field = self.sweep_view.sparsities
        field.setEnabled(not pattern)
        field.setToolTip(f"The Pruning panel's {pattern} pattern fixes the sparsity: the sweep compares the "
                         "methods at it. Clear the pattern there to sweep sparsities." if pattern else
                         "Sparsities in percent, separated by commas")

    def toggle_keep_dense(self, key: str) -> None:
        """Keep weight ``key`` dense, or prune it again (the table's context menu)."""
        self.set_kept_layers(self.kept_layers ^ {key})

    def set_kept_layers(self, keys: set[str]) -> None:
        """The weights the user keeps dense (beside the Keep dense boxes): the preview, runs and
        sweeps prune the others; the preview follows at once."""
        if self.session is not None:
            keys = set(keys) & set(self.session.summary.prunable_keys)
            if keys and keys == set(self.session.summary.prunable_keys):
                dialogs.show_info(self, "One layer at least is pruned",
                                  "Keeping every layer dense leaves nothing to prune: choose another layer to "
                                  "prune first, or Prune every layer again (right-click in the table).")
                return
        if keys == self.kept_layers:
            return
        self.kept_layers = set(keys)
        self.table.kept = set(keys)
        self.request_preview(self.controls.sparsity())
        self._refresh_after()

    def _request_layers(self) -> tuple[str, ...] | None:
        """PruneRequest.layers for the user's choice: None (the preset) when no layer is kept
        dense from the table, else the preset's weights less those."""
        if not self.kept_layers or self.session is None:
            return None
        return tuple(k for k in self.session.summary.prunable_keys if k not in self.kept_layers)

    def _dense_keys(self, result: Any) -> list[str]:
        """The prunable weights ``result`` left whole (kept dense by the boxes or the table)."""
        keys = self.session.summary.prunable_keys if self.session is not None else []
        return [k for k in keys if k not in result.masks]

    def _dense_weights(self, result: Any) -> int:
        """How many weights the prunable layers ``result`` left whole hold."""
        return sum(int(self._weights[k].numel()) for k in self._dense_keys(result) if k in self._weights)

    def request_preview(self, sparsity: float) -> None:
        """Live magnitude preview at ``sparsity`` (debounced by the controls). Under the sparsity
        the model already has (pruned before: its zeros stay zeros) the slider moves up to it
        first, and the preview follows from there."""
        if self.session is None or self.bundle is None:
            return
        if sparsity < self.least_sparsity - 1e-9 and not self.controls.pattern_value():
            least = self.least_sparsity
            self.statusBar().showMessage(
                f"This model already has {100 * self.own_sparsity:.1f}% zeros, which stay zeros: the sparsity "
                f"starts at {100 * least:.0f}%.", 10000)
            if least > sparsity:
                self.controls.set_sparsity(least)  # its preview follows (the slider's own request)
                return
        if self._preview_task is not None and self._preview_task.running:
            self._preview_task.cancel()
        scope = self.controls.scope_name()
        keep_first, keep_last = self.controls.kept_dense()
        self._preview_task = self._submit(
            jobs.magnitude_preview_job, self.session.light_model, self.bundle, sparsity, scope,
            self._request_layers(), keep_first=keep_first, keep_last=keep_last,
            arch=self.session.loaded.arch, recalibrate_bn=self.controls.recalibrate_bn(),
            bn_augment=self.controls.bn_augment(), pattern=self.controls.pattern_value(),
            cache=self.gradient_cache, title="Magnitude preview", lane="light",
            foreground=False, on_done=self._on_preview,
            on_failed=lambda exc: self.stage_label.setText(f"Preview failed: {exc}"))

    def _on_preview(self, preview: jobs.MagnitudePreview) -> None:
        self.preview = preview
        if self.outcome is None or not self._outcome_current():
            self.shown = "preview"
        self._refresh_after()
        self._check_ready()
        self.preview_updated.emit()

    def _outcome_current(self) -> bool:
        """True if the last run matches the controls (method, sparsity, scope, layers kept dense)."""
        if self.outcome is None:
            return False
        req = self.outcome.result.request
        return (req.method == self.controls.method_name() and abs(req.sparsity - self.controls.sparsity()) < 1e-9
                and req.scope == self.controls.scope_name()
                and (req.keep_first, req.keep_last) == self.controls.kept_dense()
                and req.pattern == self.controls.pattern_value()
                and req.layers == self._request_layers())

    def run_pruning(self) -> None:
        """Run the chosen method at the chosen sparsity (Ctrl+R)."""
        if self.session is None or self.bundle is None:
            return
        try:
            request = self.controls.request(layers=self._request_layers())
        except StudioError as exc:
            dialogs.show_exception(self, exc, "Check the settings")
            return
        for task in self.runner.running():
            if task.title.startswith(("Pruning", "Refining")):
                task.cancel()
        live = request.method == "chita++"  # its stages take minutes on a real network: drawn as they come
        tag = object()
        if live:
            self._live_run = tag  # stages of an older, cancelled run are not drawn
            self.objective_plot.start_live(method_label(request.method))
        else:
            self._show_objective_of_outcome()  # a cancelled CHITA++ run's stages go
        self._submit(jobs.run_job, self.session.loaded.model, self.bundle, request, arch=self.session.loaded.arch,
                     cache=self.gradient_cache, sparse_deflate=self.act_sparse.isChecked(),
                     float16=self.act_float16.isChecked(),
                     title=f"Pruning with {method_label(request.method)} at {sparsity_label(request)}",
                     on_done=self._on_run_done, on_cancelled=lambda: self._on_run_cancelled(tag),
                     on_failed=lambda exc: self._on_run_failed(tag, exc),
                     on_partial=(lambda record: self._on_run_stage(tag, record)) if live else None)

    def refine_last_run(self) -> None:
        """Refine the last run's kept weights, mask fixed, without pruning again (Ctrl+Shift+F):
        the Refine box's number of steps, or 3 when it is off."""
        if self.session is None or self.bundle is None:
            return
        if self.outcome is None:
            dialogs.show_info(self, "Nothing to refine yet",
                              "Run a pruning method first (Ctrl+R): refining improves the kept weights of the last run.")
            return
        if any(t.title.startswith(("Pruning", "Refining")) for t in self.runner.running(foreground=True)):
            return  # the run being computed, or refined, replaces this one
        started = self.outcome
        req = started.result.request
        steps = min(int(self.controls.refine.value()) or DEFAULT_REFINE_STEPS, MAX_REFINE_STEPS - req.refine_steps)
        if steps < 1:
            dialogs.show_info(self, "Refined as far as it goes",
                              f"This run has had {req.refine_steps} refinement steps, the most there are. "
                              "Run the method again (Ctrl+R) to start from a fresh pruning.")
            return

        def done(outcome: jobs.RunOutcome) -> None:
            if self.outcome is not started:  # another run replaced this one meanwhile
                return
            self._on_run_done(outcome)
            if outcome.magnitude_eval is None and started.magnitude_eval is not None:
                self._compare_refined(outcome)

        self._submit(jobs.refine_job, self.session.loaded.model, self.bundle, started, steps,
                     arch=self.session.loaded.arch, sparse_deflate=self.act_sparse.isChecked(),
                     float16=self.act_float16.isChecked(),
                     title=f"Refining {method_label(req.method)} at {sparsity_label(req)} ({steps} steps)",
                     on_done=done)

    def _compare_refined(self, refined: jobs.RunOutcome) -> None:
        """Magnitude pruning refined as many steps, in the background: the refined run's
        "vs refined magnitude" line says "measuring…" until it arrives."""

        def done(ev: Any) -> None:
            if self.outcome is not None and self.outcome.result is refined.result:
                self._update_outcome(refined.result, magnitude_eval=ev)
                self.comparison_finished.emit(self.outcome)

        def stopped() -> None:
            if self.outcome is not None and self.outcome.result is refined.result:
                self.preview_panel.set_versus(None)

        self._submit(jobs.refined_magnitude_job, self.session.loaded.model, self.bundle, refined.result.request,
                     arch=self.session.loaded.arch, cache=self.gradient_cache, title=COMPARE_TITLE, foreground=False,
                     on_done=done, on_failed=lambda exc: stopped(), on_cancelled=stopped)
        self.preview_panel.set_versus(None, "refined magnitude", pending=True)

    def _on_run_done(self, outcome: jobs.RunOutcome) -> None:
        self.outcome = outcome
        self._live_run = None
        self.runs = keep_recent([*self.runs, outcome])
        self._refresh_runs()
        self.shown = "run"
        self._refresh_after()
        self._measure_sizes()  # a storage setting switched while it ran
        self._update_busy()
        self.run_finished.emit(outcome)

    # ======================================================================================
    # runs

    def _refresh_runs(self) -> None:
        current = next((i for i, r in enumerate(self.runs) if r is self.outcome), None)
        self.runs_view.set_runs(self.runs, self.baseline.eval if self.baseline else None, current,
                                self.bundle.evaluation if self.bundle is not None else None)
        shown = getattr(self, "_classes_shown", None)
        current_evals = [x.eval for x in (self.outcome, self.preview) if x is not None]
        if shown is not None and any(shown[0] is e for e in current_evals) \
                and self._class_against_runs(shown[0]) != [
                    (self.class_against.itemData(i), self.class_against.itemText(i))
                    for i in range(2, self.class_against.count())]:
            self._show_classes(*shown)  # the Classes tab's chooser offers the runs kept now

    def show_run(self, index: int) -> None:
        """Show run ``index`` of the Runs tab again: the sidebar, the plots and Export take it,
        and the controls go to its method, sparsity and scope."""
        if not 0 <= index < len(self.runs):
            return
        outcome = self.runs[index]
        req = outcome.result.request
        self.controls.set_method(req.method)
        i = self.controls.scope.findData(req.scope)
        if i >= 0:
            self.controls.scope.setCurrentIndex(i)
        self.controls.set_pattern(req.pattern)
        self.controls.set_sparsity(req.sparsity)
        self.outcome = outcome
        self.shown = "run"
        self._refresh_runs()
        self._refresh_after()
        self._measure_sizes()
        self.statusBar().showMessage(f"Showing run {index + 1}: {describe_run(outcome)}. Export with Ctrl+E.", 8000)
        self.run_shown.emit(outcome)

    def _report_run(self, index: int) -> None:
        self.show_run(index)
        self.save_report_dialog()

    def _export_run(self, index: int) -> None:
        self.show_run(index)
        self.export_dialog()

    def clear_runs(self) -> None:
        """Forget every run but the one shown now (which Export still takes)."""
        self.runs = [r for r in self.runs if r is self.outcome]
        self._refresh_runs()

    def _on_run_cancelled(self, tag: object = None) -> None:
        self._restore_objective(tag)
        self.run_cancelled.emit()

    def _on_run_failed(self, tag: object, exc: BaseException) -> None:
        self._restore_objective(tag)
        self._show_failure(exc)

    def _on_run_stage(self, tag: object, record: Any) -> None:
        """A stage of the running CHITA++ is done: the Objective tab draws it."""
        if tag is self._live_run:
            self.objective_plot.add_stage(record)

    def _restore_objective(self, tag: object) -> None:
        """The run ``tag`` did not finish: if the Objective tab was drawing its stages, it goes
        back to the run shown."""
        if tag is self._live_run:
            self._show_objective_of_outcome()

    def _show_objective_of_outcome(self) -> None:
        """The Objective tab shows the run shown (if it was drawing a live CHITA++ run)."""
        self._live_run = None
        if self.objective_plot.live is not None:
            label = method_label(self.outcome.result.request.method) if self.outcome else ""
            self.objective_plot.set_result(self.outcome.result if self.outcome else None, label)

    def _display(self) -> tuple[str, Any]:
        """(kind, PruneResult) the views show now: the run if it matches the controls, else the preview."""
        if self.outcome is not None and (self.shown == "run" or self._outcome_current()):
            if self._outcome_current() or self.preview is None:
                return "run", self.outcome.result
        if self.preview is not None:
            return "preview", self.preview.result
        return "none", None

    def _refresh_after(self) -> None:
        """Re-render everything that depends on the preview or the last run."""
        kind, result = self._display()
        keys = self.session.summary.prunable_keys if self.session else []
        if kind == "run":
            out = self.outcome
            req = out.result.request
            label = method_label(req.method)
            self.table.source.set_after(out.result.layer_sparsity, label, self._dense_keys(out.result))
            lam = f" · λ = {out.result.lam:.3g}" if out.result.lam is not None else ""
            mag = out.magnitude_eval if req.method != "magnitude" else None
            dense = self.baseline.eval if self.baseline is not None else None
            hint = stages_hint(req.method, paired_or_none(out.eval, dense), paired_or_none(out.eval, mag))
            hint = f" {hint} (Method: CHITA++.)" if hint else ""
            self.preview_panel.set_after(
                out.eval, title=f"{label} · {sparsity_label(req)}", result=out.result,
                onnx_bytes=out.onnx_bytes, compressed=out.compressed_bytes, sparse_bytes=out.sparse_bytes,
                sparse_compressed=out.sparse_compressed_bytes, sizes_float16=out.sizes_float16, seconds=out.seconds,
                dense_weights=self._dense_weights(out.result),
                caption=f"{label} at {100 * req.sparsity:.0f}% sparsity{samples_note(out.result)}{lam}."
                        f"{pattern_note(out.result)}{kept_dense_note(self._dense_keys(out.result))}"
                        f"{optimality_note(out.result)}{update_scale_note(out.result)}"
                        f"{refinement_note(out.result)}"
                        f"{' A point of the sweep: its seconds are its share of the sweep.' if out.from_sweep else ''}"
                        f"{batchnorm_note(out.result)}{hint} Export with Ctrl+E.")
            versus = "refined magnitude" if req.refine_steps else "magnitude"
            self.preview_panel.set_versus(paired_or_none(out.eval, mag), versus,
                                          pending=req.method != "magnitude" and mag is None and any(
                                              t.title in (COMPARE_TITLE, POINT_TITLE)
                                              for t in self.runner.running()))
            series = [(label, out.result.layer_sparsity, "accent")]
            if out.magnitude_sparsity and req.method != "magnitude":
                series.append(("Magnitude", out.magnitude_sparsity, "compare"))
            self.sparsity_bars.set_data(keys, series)
            if self._live_run is None:  # a CHITA++ run being drawn keeps the tab
                self.objective_plot.set_result(out.result, label)
            self._show_classes(out.eval, f"{label} · {sparsity_label(req)}", mag)
        elif kind == "preview":
            pv = self.preview
            req = pv.result.request
            self.table.source.set_after(pv.result.layer_sparsity, "magnitude", self._dense_keys(pv.result))
            run_note = ""
            if self.outcome is not None:
                oreq = self.outcome.result.request
                run_note = (f" The last {method_label(oreq.method)} run ({sparsity_label(oreq)}) is kept for export.")
            self.preview_panel.set_versus(None)
            self.preview_panel.set_after(
                pv.eval, title=f"Magnitude · {sparsity_label(req)}", result=pv.result, dense_weights=self._dense_weights(pv.result),
                caption=f"Live magnitude preview.{pattern_note(pv.result)}{kept_dense_note(self._dense_keys(pv.result))} "
                        "Release the slider or press "
                        f"Ctrl+R to run {method_label(self.controls.method_name())}.{run_note}")
            self.sparsity_bars.set_data(keys, [("Magnitude (preview)", pv.result.layer_sparsity, "compare")])
            self._show_classes(pv.eval, f"Magnitude · {sparsity_label(req)}")
        else:
            self._show_classes(None, "")
        self.overview.set_threshold(self.preview.threshold if self.preview is not None else None,
                                    self._dense_keys(result) if result is not None else ())
        self._render_layer()
        self._update_busy()
        QTimer.singleShot(0, self._fit_sidebar)  # new numbers may need a wider sidebar
        QTimer.singleShot(0, self._fit_table_if_clipped)

    def _show_classes(self, shown: Any, title: str, magnitude: Any = None) -> None:
        """The Classes tab: ``shown``'s (an EvalResult) change per class on the evaluation images
        against the dense model, or, when the tab's chooser says so and the run has one, against
        ``magnitude`` (magnitude pruning's EvalResult at the same sparsity); cleared where the two
        are missing or scored apart."""
        self._classes_shown = (shown, title, magnitude)
        self._sync_class_against(shown)
        choice = self.class_against.currentData()
        others = self.class_against.count() > 2  # runs of the Runs tab to compare with
        self.class_against.setEnabled(magnitude is not None or choice != "dense" or others)
        if choice == "magnitude":
            reference, label = magnitude, "magnitude"
        elif isinstance(choice, str) and choice.startswith("run:"):
            i = next(i for i, r in enumerate(self.runs) if _run_key(r) == choice)
            reference, label = self.runs[i].eval, f"run {i + 1}"
        else:
            reference, label = (self.baseline.eval if self.baseline is not None else None), "dense"
        images = self.bundle.evaluation if self.bundle is not None else None
        scores = class_changes(shown, reference, images)
        if not scores:  # missing, or not scored on these images
            self.class_bars.set_data((), against=label)
            self.changed_view.set_data(None, None, None, against=label)
            return
        self.changed_view.set_data(shown, reference, images, self.bundle.normalization, against=label)
        self.class_bars.set_data(scores, paired_or_none(shown, reference).difference, title, against=label)

    def _sync_class_against(self, shown: Any) -> None:
        """The Classes tab's chooser offers the dense model, magnitude at the same sparsity and
        every run of the Runs tab but the one shown (newest first); a chosen run that has gone
        gives way to the dense model."""
        box = self.class_against
        choice = box.currentData()
        box.blockSignals(True)
        while box.count() > 2:
            box.removeItem(2)
        for key, text in self._class_against_runs(shown):
            box.addItem(text, key)
        box.setCurrentIndex(max(0, box.findData(choice)))
        box.blockSignals(False)

    def _class_against_runs(self, shown: Any) -> list[tuple[str, str]]:
        """The runs the Classes tab's chooser offers beside ``shown``, newest first: each item's
        data and text."""
        return [(_run_key(r), f"run {i + 1}: {describe_run(r)}")
                for i, r in reversed(list(enumerate(self.runs))) if r.eval is not shown]

    def _on_class_against(self) -> None:
        """The Classes tab's chooser changed: remember it (the dense model or magnitude; a run is
        this session's) and draw again."""
        if self.class_against.currentData() in ("dense", "magnitude"):
            self.settings.setValue("view/classes_against", self.class_against.currentData())
        shown = getattr(self, "_classes_shown", None)
        if shown is not None:
            self._show_classes(*shown)

    # ======================================================================================
    # the chosen layer

    def _on_layer_selected(self, key: str) -> None:
        """Draw the chosen layer at once, or, while an arrow key repeats, once it stops coming
        faster than a layer draws (0.1-0.2 s for ResNet-50's largest)."""
        if self.table.repeating:
            self._layer_timer.start()
        else:
            self._layer_timer.stop()
            self._show_chosen_layer()

    def _show_chosen_layer(self) -> None:
        key = self.table.current_key()
        self.overview.set_selected(key)
        self.sensitivity_bars.set_selected(key)
        self._render_layer()

    def _render_layer(self) -> None:
        """Fill the three per-layer plots for the selected layer."""
        key = self.table.current_key() if self.session else None
        weight = self._weights.get(key) if key else None
        if weight is None:
            self.layer_title.setText("Select a layer")
            self.layer_detail.setText("")
            self.weight_hist.set_data(None)
            self.importance_hist.set_data(None)
            self.heatmap.set_data(None)
            return
        w = weight.detach().cpu().float().numpy()
        kind, result = self._display()
        mask = kept = None
        if result is not None and key in result.masks:
            mask = result.masks[key].detach().cpu().numpy().astype(bool)
            new_w = result.weights[key].detach().cpu().float().numpy() if key in result.weights else w
            kept = new_w[mask]
        threshold = None
        kept_dense = result is not None and key in self._dense_keys(result)
        if self.preview is not None and self.preview.threshold is not None and result is not None and not kept_dense:
            if abs(self.preview.result.request.sparsity - result.request.sparsity) < 1e-9:
                threshold = self.preview.threshold
        if kind == "preview" and result is not None and result.request.scope == "layer" and mask is not None:
            pruned = np.abs(w[~mask])
            threshold = float(pruned.max()) if pruned.size else None
        label = method_label(result.request.method) if result is not None else ""
        self.weight_hist.set_data(w.ravel(), kept, threshold, kept_label="kept")
        row = next((r for r in self.session.summary.rows if r.key == key), None)
        shape = " × ".join(str(s) for s in w.shape)
        detail = f"{row.type if row else ''} · {shape} · {w.size:,} weights"
        if mask is not None:
            detail += f" · {100 * (1 - mask.mean()):.1f}% pruned ({label}; dimmed in the map)"
        elif kept_dense:
            detail += f" · kept dense ({label}: Keep dense in the Pruning panel)"
        self.layer_title.setText(key)
        self.layer_detail.setText(detail)
        self.layer_detail.setToolTip(detail)
        self.weight_hist.set_title(f"Weights of {key if len(key) <= 32 else '…' + key[-31:]}")  # full name above
        sal = self.saliency.get(key) if self.saliency else None
        mask2d = jobs.as_matrix(mask.astype(np.float32)) if mask is not None else None
        if sal is not None:
            self.importance_hist.set_data(sal, mask)
            logs = self.importance_hist.logs.reshape(np.shape(sal))  # computed once for both plots
            self.heatmap.set_data(jobs.as_matrix(logs), mask2d, "log₁₀ saliency",
                                  jobs.matrix_columns_label(w.shape))
            self.heatmap.set_title("Importance map (log₁₀ saliency)")
        else:
            self.importance_hist.set_data(None)
            if self.saliency is None and self.session is not None and self.bundle is not None:
                self.importance_hist.set_message("Computing importance (empirical Fisher)…")
            a = np.abs(jobs.as_matrix(w))
            self.heatmap.set_data(np.log10(np.maximum(a, 1e-12)), mask2d, "log₁₀ |w|",
                                  jobs.matrix_columns_label(w.shape))
            self.heatmap.set_title("Weight map (log₁₀ |w|)")

    def _apply_filter(self) -> None:
        proxy = self.table.proxy
        text = re.escape(self.filter_edit.text().strip())
        if self.prunable_only.isChecked():
            keys = {r.key for r in self.table.source.rows() if r.prunable}
            names = [re.escape(r.name) for r in self.table.source.rows() if r.key in keys]
            pattern = "^(" + "|".join(names) + ")$" if names else "^$"
            proxy.setFilterRegularExpression(pattern)
            if text:
                # both conditions: prunable and containing the text
                names = [re.escape(r.name) for r in self.table.source.rows()
                         if r.key in keys and self.filter_edit.text().strip().lower() in r.name.lower()]
                proxy.setFilterRegularExpression("^(" + "|".join(names) + ")$" if names else "^$")
        else:
            proxy.setFilterRegularExpression(text)
        if not self.table.currentIndex().isValid() and proxy.rowCount() > 0:
            self.table.setCurrentIndex(proxy.index(0, 1))

    # ======================================================================================
    # export

    def _last_run_file(self, nothing: str, what: str, suffix: str) -> str | None:
        """The file name the last run is offered under (``pruned_file_name`` with ``suffix``, in
        the remembered export folder), or None, after saying so (``nothing``: the dialog's title;
        ``what``: what the action writes), when there is no run yet."""
        if self.session is None or self.bundle is None:
            return None
        if self.outcome is None:
            dialogs.show_info(self, nothing, f"Run a pruning method first (Ctrl+R): {what} of the last run.")
            return None
        req = self.outcome.result.request
        name = Path(pruned_file_name(self.model_label.text(), req.method, req.sparsity)).with_suffix(suffix)
        return str(Path(st.read(self.settings, "export/folder", str(Path.home()))) / name)

    def _ask_run_path(self, nothing: str, what: str, suffix: str, caption: str, kind: str) -> str | None:
        """A path for a file of the last run, asked with the save dialog (``caption``; ``kind``:
        its filter, e.g. "ONNX model"), ending in ``suffix``, its folder remembered; None if
        there is no run or the dialog was cancelled."""
        default = self._last_run_file(nothing, what, suffix)
        if default is None:
            return None
        path, _ = QFileDialog.getSaveFileName(self, caption, default, f"{kind} (*{suffix})")
        if not path:
            return None
        if not path.lower().endswith(suffix):
            path += suffix
        self.settings.setValue("export/folder", str(Path(path).parent))
        return path

    def export_dialog(self) -> None:
        """Ask for an .onnx path and export the last run's pruned copy (Ctrl+E)."""
        path = self._ask_run_path("Nothing to export yet", "export writes the pruned model", ".onnx",
                                  "Export pruned model as ONNX", "ONNX model")
        if path:
            self.export_to(path)

    def save_weights_dialog(self) -> None:
        """Ask for a .safetensors / .pt path and save the last run's pruned state_dict (Ctrl+Shift+S)."""
        default = self._last_run_file("Nothing to save yet", "this saves the pruned weights", ".safetensors")
        if default is None:
            return
        path, chosen = QFileDialog.getSaveFileName(self, "Save the pruned weights", default,
                                                   "safetensors (*.safetensors);;PyTorch (*.pt *.pth)")
        if not path:
            return
        if not path.lower().endswith(WEIGHT_SUFFIXES):
            path += ".pt" if chosen.startswith("PyTorch") else ".safetensors"
        self.settings.setValue("export/folder", str(Path(path).parent))
        self.save_weights_to(path)

    def save_weights_to(self, path: str) -> None:
        """Save the last run's pruned state_dict to ``path`` in the background."""
        if self.outcome is None or self.session is None:
            return
        result, loaded = self.outcome.result, self.session.loaded
        self._submit(jobs.save_weights_job, loaded.model, result, path,
                     metadata=pruned_metadata(loaded.source, loaded.arch, result),
                     title="Saving the weights", on_done=lambda report: self._on_weights_saved(report, result))

    def _on_weights_saved(self, report: Any, result: Any) -> None:
        loaded = self.session.loaded if self.session is not None else None
        arch = loaded.arch if loaded is not None else None
        if arch:
            opens = (f"It opens again with the architecture {arch} (File ▸ Open model, or --arch {arch} on "
                     "the command line).")
        elif loaded is not None and loaded.format == "onnx":
            opens = ("Its keys are the ONNX file's weight names; to ship the pruned graph, export it as ONNX "
                     "(Ctrl+E).")
        else:
            opens = "Load it into the same network in PyTorch (model.load_state_dict)."
        dialogs.show_info(self, "Weights saved",
                          f"{report.path}\n\n{report.bytes:,} bytes ({fmt_bytes(report.bytes)}), {report.tensors} "
                          f"tensors: the whole state_dict of {method_label(result.request.method)} at "
                          f"{100 * result.sparsity:.1f}% sparsity, read back bit for bit. Pruned weights are exact "
                          f"zeros (the masks are weight != 0). {opens}")
        self.statusBar().showMessage(f"Saved the weights to {report.path}", 8000)
        self.weights_saved.emit(report)

    def export_to(self, path: str) -> None:
        """Export the last run's pruned copy to ``path`` in the background."""
        if self.outcome is None or self.session is None:
            return
        result = self.outcome.result  # the report names this run even if another finishes meanwhile
        self._submit(jobs.export_job, self.session.loaded.model, result, self.bundle, path,
                     sparse=self.act_sparse.isChecked(), float16=self.act_float16.isChecked(),
                     reference=self.outcome.eval, title="Exporting ONNX",
                     on_done=lambda report: self._on_exported(report, result))

    def _on_exported(self, report: Any, result: Any = None) -> None:
        self.last_export = report
        self.last_export_result = result  # the run the file holds: its report names the file
        req = result.request if result is not None else None
        dense = self.baseline
        zeros = getattr(report, "zero_fractions", {}) or {}
        matched = sum(1 for a, b in zeros.values() if abs(a - b) < 1e-9)
        rows = [
            ("File", report.path),
            ("Pruned with", f"{method_label(req.method)} at {sparsity_label(req)}"
                            f"{f', refined ({refinement_taken(result)} of {req.refine_steps} steps taken)' if req.refine_steps else ''}"
                            if req else "–"),
            ("ONNX size", f"{report.onnx_bytes:,} bytes ({fmt_bytes(report.onnx_bytes)})"),
            ("Compressed (deflate)", f"{report.compressed_bytes:,} bytes ({fmt_bytes(report.compressed_bytes)})"),
            ("Storage", describe_storage(report)),
        ]
        half = " (float16 weights)" if dense is not None and dense.sizes_float16 else ""  # as measured
        if dense is not None and dense.onnx_bytes and report.sparse_tensors:
            rows.append((f"Dense model's file{half}", f"{dense.onnx_bytes:,} bytes ({fmt_bytes(dense.onnx_bytes)}) "
                         f"→ {dense.onnx_bytes / max(1, report.onnx_bytes):.1f}× smaller as written"))
        if dense is not None and dense.compressed_bytes:
            rows.append((f"Dense model{half}, compressed",
                         f"{dense.compressed_bytes:,} bytes ({fmt_bytes(dense.compressed_bytes)}) "
                         f"→ {dense.compressed_bytes / max(1, report.compressed_bytes):.1f}× smaller"))
        scored = describe_onnx_accuracy(report)
        rows += [
            *([("Accuracy of the file", scored)] if scored else []),
            ("Largest output difference", f"{report.max_abs_diff:.2e} (ONNX Runtime vs PyTorch)"),
            ("Zeros verified", f"{matched} of {len(zeros)} pruned weight tensors match in the file"),
            ("Graph", f"{html_escape(report.interface.replace('`', ''))}, opset {report.opset}"),
            ("Time", f"{report.seconds:.1f} s"),
        ]
        html = "<table cellspacing='6'>" + "".join(
            f"<tr><td style='color:{self.theme.palette.muted}'>{k}</td><td><b>{v}</b></td></tr>" for k, v in rows) + "</table>"
        self.stage_label.setText(f"Exported {report.path}")
        dialogs.show_result(self, "Export finished", html)
        self.export_finished.emit(report)
        out = self.outcome
        if (out is not None and out.result is result and req is not None and req.refine_steps
                and req.method != "magnitude" and out.magnitude_eval is None):
            self._compare_refined(out)  # the export cancelled it: measure it now
        self._update_busy()

    def time_last_export(self) -> None:
        """Time the last exported file beside the dense model in ONNX Runtime, in the background."""
        if self.last_export is None or self.session is None or self.bundle is None:
            return
        path = self.last_export.path
        self._submit(jobs.latency_job, self.session.loaded.model, self.bundle, path, title=LATENCY_TITLE,
                     on_done=lambda lat: self._on_latency(path, lat))

    def _on_latency(self, path: str, lat: Any) -> None:
        pruned, dense = lat
        ratio = pruned.median_ms / dense.median_ms
        dialogs.show_info(
            self, "Time in ONNX Runtime",
            f"{path}\n\nOne image per run on this computer's CPU: {pruned.describe()}. The dense model, in "
            f"the same alternating rounds: {dense.describe()}. The file takes {ratio:.2f}× the dense model's "
            "time.\n\nONNX Runtime's CPU kernels multiply zero weights like any others (sparse storage "
            "is expanded when the file is loaded), so pruning makes the file smaller, compressed or "
            "with sparse storage, not faster there (docs/benchmarks.md, \"Pruned ONNX files in onnxruntime\").")
        self.statusBar().showMessage(f"{Path(path).name}: {pruned.median_ms:.3g} ms per image in ONNX Runtime, "
                                     f"{ratio:.2f}× the dense model's time", 10000)
        self.last_latency = (path, lat)
        self.latency_finished.emit(lat)

    def compare_file_dialog(self) -> None:
        """Ask for a model file and compare it with the loaded model on the evaluation images."""
        start = st.read(self.settings, "export/folder", "")
        path, _ = QFileDialog.getOpenFileName(self, "Compare with a model file", start, FILE_FILTER)
        if path:
            self.compare_with_file(path)

    def compare_with_file(self, path: str) -> None:
        """Score the model file at ``path`` on the evaluation images in the background, then say
        how it compares with the dense model and the run shown (core.evaluate, core.class_accuracy)."""
        if self.session is None or self.bundle is None or self.baseline is None:
            return
        self._submit(jobs.compare_file_job, path, self.bundle, arch=self.session.loaded.arch,
                     title=COMPARE_FILE_TITLE, on_done=lambda res: self._on_file_compared(res))

    def _on_file_compared(self, res: Any) -> None:
        source, ev, zeros = res
        dense = self.baseline.eval if self.baseline is not None else None
        lo, hi = ev.accuracy_ci
        lines = [f"{source}\n",
                 f"Accuracy on the {ev.n:,} evaluation images: {100 * ev.accuracy:.2f}% [{100 * lo:.2f}, "
                 f"{100 * hi:.2f}]" + ("" if zeros is None else f"; {100 * zeros:.1f}% of its weights are zero.")]
        against = [("the dense model", dense)]
        if self.outcome is not None:
            against.append((f"the run shown ({describe_run(self.outcome)})", self.outcome.eval))
        for name, other in against:
            d = paired_or_none(ev, other)
            if d is None:
                continue
            same = agreement(ev, other)
            agree = "" if same is None else f" The two give the same class to {100 * same:.2f}% of the images."
            lines.append(f"Against {name}: {d.describe()}.{agree}")
        classes = class_changes(ev, dense, self.bundle.evaluation if self.bundle is not None else None)
        if classes:
            lines.append(f"Classes against the dense model: {describe_classes(classes)}.")
        dialogs.show_info(self, "Compared with a model file", "\n".join(lines))
        self.statusBar().showMessage(f"{Path(source).name}: {100 * ev.accuracy:.2f}% on the evaluation images", 10000)
        self.file_compared.emit(res)

    def save_report_dialog(self) -> None:
        """Ask for a .md path and write the shown run's report there."""
        path = self._ask_run_path("Nothing to report yet", "the report describes a run", ".md",
                                  "Save the run's report", "Markdown")
        if path:
            self.save_report_to(path)

    def save_report_to(self, path: str) -> str | None:
        """Write the shown run's Markdown report (core.report) to ``path`` atomically: its settings,
        accuracy against dense and magnitude, classes, layers, solver and, where this run was
        exported, the file (and its time in ONNX Runtime, if measured). Returns the path."""
        out = self.outcome
        if out is None or self.baseline is None or self.session is None or self.bundle is None:
            return None
        from core.report import run_report, write_report

        export = self.last_export if self.last_export_result is out.result else None
        latency = (self.last_latency[1] if export is not None and self.last_latency is not None
                   and self.last_latency[0] == export.path else None)
        sheet = Path(path).with_name(Path(path).stem + "_lost.png")
        try:
            lost = changed_images(out.eval, self.baseline.eval, self.bundle.evaluation.y)
        except ValueError:  # a run saved without its predictions: the report without the images
            lost = ()
        try:
            if lost:  # the images the run lost against dense, beside the report and linked from it
                write_contact_sheet(sheet, self.bundle.evaluation, lost, normalization=self.bundle.normalization,
                                    title=f"{len(lost)} images lost against the dense model")
            text = run_report(out.result, model=self.session.loaded.source, dense=self.baseline.eval,
                              pruned=out.eval, images=self.bundle.evaluation, magnitude=out.magnitude_eval,
                              export=export, latency=latency, lost_images=sheet.name if lost else None)
            written = write_report(text, path, field=None)
        except (OSError, StudioError) as exc:
            self._show_failure(exc)
            return None
        self.statusBar().showMessage(f"Saved the run's report to {written}"
                                     + (f", and the images it lost to {sheet.name} beside it" if lost else ""), 8000)
        return written

    def save_changed_images_dialog(self) -> None:
        """Ask for a .png path and save the Classes tab's images there (its Save… button)."""
        if not self.changed_view.changed or self.session is None:
            return
        folder = Path(st.read(self.settings, "export/folder", str(Path.home())))
        default = folder / self.changed_view.file_name(self.model_label.text())
        path, _ = QFileDialog.getSaveFileName(self, "Save these images as PNG", str(default), "PNG image (*.png)")
        if not path:
            return
        if not path.lower().endswith(".png"):
            path += ".png"
        self.settings.setValue("export/folder", str(Path(path).parent))
        self.save_changed_images_to(path)

    def save_changed_images_to(self, path: str) -> str | None:
        """Write the Classes tab's images (those listed now) as a PNG contact sheet at ``path``;
        returns the path, or None after an error dialog."""
        try:
            shown = self.changed_view.save_to(path)
        except (OSError, StudioError) as exc:
            self._show_failure(exc)
            return None
        self.statusBar().showMessage(f"Saved {shown} image{'' if shown == 1 else 's'} to {path}", 8000)
        return path

    # ======================================================================================
    # sweep

    def _start_sweep_from_view(self) -> None:
        self.tabs.setCurrentWidget(self.sweep_view)
        self.sweep_view.run_button.click()

    def run_sweep(self, methods: list[str], sparsities: list[float], samples: int) -> None:
        """Accuracy against sparsity for ``methods`` (core.sweep.run_sweep) in the background."""
        if self.session is None or self.bundle is None:
            return
        self.tabs.setCurrentWidget(self.sweep_view)
        refine = int(self.controls.refine.value())  # scope, refinement, images, BatchNorm: Pruning panel
        pattern = parse_pattern(self.controls.pattern_value())
        if pattern is not None:  # the Pruning panel's pattern fixes the sparsity: methods compared at it
            sparsities = [pattern.sparsity]
            where = (f"at the Pruning panel's {pattern} pattern ({100 * pattern.sparsity:.0f}%; "
                     "clear it there to sweep sparsities)")
        else:
            where = f"× {len(sparsities)} sparsities"
        self.sweep_view.status.setText(f"Sweeping {len(methods)} methods {where}"
                                       f"{f', each refined up to {refine} steps' if refine else ''}…"
                                       " Each point appears when it is done.")
        self.sweep_view.start_run()
        self._sweep_gen = self._gen  # its points belong to this model and data
        self._submit(jobs.sweep_job, self.session.loaded.model, self.bundle, methods, sparsities, samples=samples,
                     arch=self.session.loaded.arch, scope=self.controls.scope_name(), refine_steps=refine,
                     images_per_row=int(self.controls.per_row.value()),
                     recalibrate_bn=self.controls.recalibrate_bn(), bn_augment=self.controls.bn_augment(),
                     update_scale=self.controls.update_scale_value(), cache=self.gradient_cache,
                     keep_first=self.controls.kept_dense()[0], keep_last=self.controls.kept_dense()[1],
                     layers=self._request_layers(), pattern=str(pattern) if pattern is not None else "",
                     keep_results=SWEEP_KEEP_BYTES, title="Sweep", on_done=self._on_sweep_done, on_partial=self._on_sweep_partial,
                     on_cancelled=self._on_sweep_cancelled, on_failed=self._on_sweep_failed)

    def run_sensitivity(self, sparsity: float | None = None) -> None:
        """Each prunable layer pruned alone by magnitude at ``sparsity`` (default: the slider's),
        in the background; the Sensitivity tab draws the loss each one costs."""
        if self.session is None or self.bundle is None:
            return
        s = self.controls.sparsity() if sparsity is None else float(sparsity)
        keys = list(self.session.summary.prunable_keys)
        self.overview_tabs.setCurrentWidget(self.sensitivity_bars)
        self.sensitivity_bars.set_data(keys, {}, s)
        self.sensitivity_bars.set_message(f"Pruning each of {len(keys)} layers alone at {100 * s:.0f}%…")
        self._submit(jobs.sensitivity_job, self.session.loaded.model, self.bundle, keys, [s],
                     title="Layer sensitivity", on_done=lambda res: self._on_sensitivity(res, keys, s),
                     on_cancelled=lambda: self.sensitivity_bars.set_data(keys, {}, None))

    def _on_sensitivity(self, result: Any, keys: list[str], sparsity: float) -> None:
        self.sensitivity_bars.set_data(keys, {r.layer: r.loss_change for r in result.rows}, sparsity)
        top = result.ranked(sparsity)[:3]
        self.statusBar().showMessage(
            f"Layer sensitivity at {100 * sparsity:.0f}% on {result.dense.n:,} calibration images: costliest "
            + ", ".join(f"{r.layer} (loss {r.loss_change:+.3f})" for r in top)
            + ". Right-click a layer in the table to keep it dense.", 15000)
        self.sensitivity_finished.emit(result)

    def _on_sweep_partial(self, result: Any) -> None:
        """A point of the running sweep is done: draw the sweep so far."""
        self.sweep_view.set_result(result, getattr(result, "dense", None), final=False,
                                   images=self.bundle.evaluation if self.bundle is not None else None)
        meta = getattr(result, "meta", {})
        self.sweep_view.status.setText(f"Sweeping: {len(result.rows)} of {meta.get('points', '?')} points done…")

    def _on_sweep_cancelled(self) -> None:
        """Keep the points a cancelled sweep finished, and let them be saved."""
        kept = self.sweep_view.keep_partial()
        self.sweep_view.status.setText(
            f"Sweep cancelled after {kept} of {self.sweep_view.result.meta.get('points', '?')} points: the finished "
            "points are kept, and can be saved below." if kept else "Sweep cancelled before its first point.")

    def _on_sweep_failed(self, exc: BaseException) -> None:
        """The error dialog, and the points finished before the failure kept for saving."""
        kept = self.sweep_view.keep_partial()
        self.sweep_view.status.setText(f"Sweep failed after {kept} points: the finished points are kept."
                                       if kept else "Sweep failed.")
        self._show_failure(exc)

    def _on_sweep_done(self, result: Any) -> None:
        dense = getattr(result, "dense", None) or (self.baseline.eval if self.baseline else None)
        self.sweep_view.set_result(result, dense, images=self.bundle.evaluation if self.bundle is not None else None)
        note = getattr(result, "meta", {}).get("samples_note")
        self.sweep_view.status.setText("Sweep finished. Double-click a point to show and export it, or save "
                                       "the plot or the table below."
                                       + (f" Gradients: {note}." if note else ""))
        self.sweep_finished.emit(result)

    def show_sweep_point(self, method: str, sparsity: float) -> None:
        """Show a point of the sweep like a run: it joins the Runs tab, and the sidebar, the
        plots and Export take it. Its magnitude baseline (where the sweep has none at that
        sparsity) and ONNX sizes are measured in the background. A point whose weights the sweep
        did not keep sets the Pruning panel to it instead."""
        view = self.sweep_view
        row = view.point_row(method, sparsity)
        if row is None or self.session is None or self.bundle is None:
            return
        if self._sweep_gen != self._gen:
            dialogs.show_info(self, "The sweep was on another model or data",
                              "This sweep ran before the model or the data changed, so its points do not "
                              "apply to what is loaded now. Run the sweep again (Ctrl+Shift+R) to show its points.")
            return
        label = f"{method_label(method)} at {100 * sparsity:.0f}%"
        if row.result is None:
            self.controls.set_method(method)
            self.controls.set_pattern(str((view.result.meta if view.result is not None else {}).get("pattern") or ""))
            self.controls.set_sparsity(sparsity)
            self.statusBar().showMessage(f"The sweep did not keep the weights of {label} (it keeps at most "
                                         f"{SWEEP_KEEP_BYTES / 1024**3:.0f} GiB): the Pruning panel is set to it; "
                                         "press Ctrl+R to run it.", 10000)
            return
        index = next((i for i, r in enumerate(self.runs) if r.result is row.result), None)
        if index is not None:  # shown before: the same run
            self.show_run(index)
            return
        mag = view.point_row("magnitude", sparsity) if method != "magnitude" else row
        mag_result = getattr(mag, "result", None)
        outcome = jobs.RunOutcome(row.result, row.eval, None, None,
                                  dict(mag_result.layer_sparsity) if mag_result is not None else {},
                                  mag.eval if mag is not None and mag_result is not None else None,
                                  row.seconds, from_sweep=True)
        self.runs = keep_recent([*self.runs, outcome])
        self.show_run(next(i for i, r in enumerate(self.runs) if r is outcome))

        def done(complete: jobs.RunOutcome) -> None:
            self._update_outcome(outcome.result, magnitude_sparsity=complete.magnitude_sparsity,
                                 magnitude_eval=complete.magnitude_eval,
                                 **{k: getattr(complete, k) for k in jobs.SIZE_FIELDS
                                    if getattr(complete, k) is not None})

        # the ONNX sizes, and a magnitude baseline where the sweep has none, touch no gradients (unless
        # that baseline is refined), so they need not wait in the heavy lane behind a running sweep;
        # the light lane works on its own copy of the model
        sizes_only = method == "magnitude" or (outcome.magnitude_eval is not None and bool(outcome.magnitude_sparsity))
        light = sizes_only or not row.result.request.refine_steps
        self._submit(jobs.complete_point_job, self.session.light_model if light else self.session.loaded.model,
                     self.bundle, outcome, arch=self.session.loaded.arch, cache=self.gradient_cache,
                     sparse_deflate=self.act_sparse.isChecked(), float16=self.act_float16.isChecked(),
                     title=POINT_TITLE,
                     lane="light" if light else "heavy",
                     foreground=False, on_done=done, on_failed=lambda exc: self._refresh_after(),
                     on_cancelled=self._refresh_after)
        self._refresh_after()  # "vs magnitude: measuring…" while it runs

    def export_points_dialog(self) -> None:
        """Ask for a folder and export every point of the sweep there (the Sweep tab's *Export ONNX…*)."""
        if self._sweep_gen != self._gen or self.sweep_view.result is None:
            dialogs.show_info(self, "The sweep was on another model or data",
                              "This sweep ran before the model or the data changed. Run the sweep again "
                              "(Ctrl+Shift+R) to export its points.")
            return
        folder = QFileDialog.getExistingDirectory(self, "Export the sweep's points to a folder",
                                                  st.read(self.settings, "export/folder", str(Path.home())))
        if folder:
            self.settings.setValue("export/folder", folder)
            self.export_points_to(folder)

    def export_points_to(self, folder: str) -> None:
        """Export the sweep's points to ``folder`` in the background, one verified ONNX file each."""
        result = self.sweep_view.result
        if result is None or self.session is None or self._sweep_gen != self._gen:
            return
        rows = tuple(result.rows)
        self._submit(jobs.export_points_job, self.session.loaded.model, rows, self.bundle, folder,
                     stem=self.model_label.text(), sparse=self.act_sparse.isChecked(),
                     float16=self.act_float16.isChecked(),
                     title=f"Exporting {len(rows)} points",
                     on_done=lambda reports: self._on_points_exported(folder, reports))

    def _on_points_exported(self, folder: str, reports: dict) -> None:
        written = [(k, r) for k, r in reports.items() if r is not None]
        missed = [k for k, r in reports.items() if r is None]

        def cell(text: str) -> str:  # kept on one line
            return f"<td>{text.replace(' ', '&nbsp;')}</td>"

        def accuracy(r: Any) -> str:  # the file's accuracy in ONNX Runtime
            return "" if r.onnx_eval is None else cell(f"{100 * r.onnx_eval.accuracy:.1f}%")

        lines = "".join(f"<tr>{cell(f'{method_label(m)} · {100 * s:g}%')}<td><b>{Path(r.path).name}</b></td>"
                        f"{cell(fmt_bytes(r.compressed_bytes))}{accuracy(r)}</tr>" for (m, s), r in written)
        sparse_note = (", with sparse storage" if written and written[0][1].sparse else "")
        scored = [r for _, r in written if r.onnx_eval is not None]
        if scored:
            differ = sum(r.scored_differently for r in scored)
            sparse_note += (f", and scored on the {scored[0].onnx_eval.n:,} evaluation images there: "
                            + ("each file's accuracy (last column) equals its point's" if differ == 0 else
                               f"{differ:,} image scorings differ from PyTorch's in all"))
        note = (f"<p>Not kept by the sweep (memory limit), so not exported: "
                f"{', '.join(f'{method_label(m)} at {100 * s:g}%' for m, s in missed)}. Run each (Ctrl+R) "
                "and export it.</p>" if missed else "")
        dialogs.show_result(self, "Sweep exported",
                            f"<p>{len(written)} files in {folder}, each loaded back in ONNX Runtime and "
                            f"checked against PyTorch{sparse_note}; sizes deflate-compressed:</p><table cellspacing='6'>{lines}</table>{note}")
        self.sweep_view.status.setText(f"Exported {len(written)} points to {folder}.")
        self.points_exported.emit(reports)

    # ======================================================================================
    # help

    def show_shortcuts(self) -> None:
        """List the keyboard shortcuts."""
        rows = [("Ctrl+O", "Open model"), ("Ctrl+D", "Choose data"), ("Ctrl+R", "Run pruning"),
                ("Ctrl+Shift+F", "Refine the last run's kept weights"), ("Esc", "Cancel"),
                ("Ctrl+E", "Export pruned ONNX"), ("Ctrl+Shift+S", "Save pruned weights (.safetensors / .pt)"),
                ("Ctrl+Up / Ctrl+Down", "Sparsity ±1%"),
                ("Ctrl+PgUp / Ctrl+PgDown", "Sparsity ±10%"), ("Ctrl+1 … Ctrl+6", "Choose method"),
                ("Ctrl+Shift+R", "Run sweep"), ("F11", "Presentation mode"), ("Ctrl+T", "Dark theme"),
                ("Ctrl+L", "Log counts"), ("Ctrl+Shift+L", "Layer sensitivity"), ("Ctrl+Shift+M / W / U", "Model / Sweep / Runs tab"),
                ("Enter", "Show the chosen sweep point or run (Sweep and Runs tables)")]
        html = "<table cellspacing='6'>" + "".join(f"<tr><td><b>{k}</b></td><td>{v}</td></tr>" for k, v in rows) + "</table>"
        dialogs.show_result(self, "Keyboard shortcuts", html)

    def show_about(self) -> None:
        """About box."""
        dialogs.show_result(self, "About CHITA Studio",
                            "<b>CHITA Studio</b><br>One-shot second-order pruning (CHITA) with live previews "
                            "and verified ONNX export.<br>Open a model, pick a method and a sparsity, run, export.")

    # ======================================================================================
    # Qt events

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt API
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt API
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if not paths:
            return
        event.acceptProposedAction()
        self.open_path(paths[0])

    def open_path(self, path: str) -> None:
        """Open a dropped path: folders and data files as data, anything else as a model."""
        p = Path(path)
        name = p.name.lower()
        if p.is_dir() or name.endswith(DATA_SUFFIXES) or "ubyte" in name:
            self.load_data(path)
        else:
            self.open_model(path)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt API
        if self.persist:
            self.save_settings()
        self.controls.cancel_pending()  # a preview scheduled by the slider would start a job later
        self.runner.shutdown()  # waits for a previous model's runs still being saved
        self._save_runs(wait=True)  # after it: the same model reloaded shares that file
        if not self._gc_released:  # the workers have stopped: automatic collection may resume
            self._gc_released = True
            main_thread_gc.release()
        super().closeEvent(event)
