"""Sweep view: accuracy against sparsity for several methods, with 95% interval bands."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pyqtgraph as pg
import pyqtgraph.exporters  # noqa: F401 - registers the exporters
from PySide6.QtCore import QSettings, QSize, Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.class_accuracy import (
    class_changes,
    describe_classes,
    most_changed,
    worst_class_text,
)
from core.errors import StudioError
from core.evaluate import paired_or_none
from core.pruning import METHOD_LABELS, METHODS
from gui import settings as st
from gui.flow_layout import FlowLayout, pair
from gui.plots import StudioPlot
from gui.table_columns import ColumnFitter
from gui.theme import Theme

DEFAULT_METHODS = ("chita", "magnitude", "obd")
DEFAULT_SPARSITIES = "30, 50, 60, 70, 80, 90"
SERIES_COLOURS = ("accent", "compare", "good", "bad", "muted", "dense")


def sweep_rows(result: Any) -> list[tuple[str, float, Any]]:
    """(method, sparsity, EvalResult) for each row of a core.sweep.SweepResult.

    Rows may be tuples ``(method, sparsity, EvalResult, summary)`` or objects with those
    attributes (``eval``/``evaluation``/``result``)."""
    out = []
    for row in getattr(result, "rows", result):
        if isinstance(row, (tuple, list)):
            method, sparsity, ev = row[0], row[1], row[2]
        else:
            method = getattr(row, "method")
            sparsity = getattr(row, "sparsity")
            ev = next((getattr(row, a) for a in ("eval", "evaluation", "eval_result", "result")
                       if hasattr(row, a)), None)
        out.append((str(method), float(sparsity), ev))
    return out


def parse_sparsities(text: str) -> list[float]:
    """'30, 50, 0.7' → [0.3, 0.5, 0.7] (values > 1 are percent)."""
    values = []
    for part in text.replace(";", ",").replace(" ", ",").split(","):
        part = part.strip().rstrip("%")
        if not part:
            continue
        try:
            v = float(part)
        except ValueError:
            raise StudioError(f"'{part}' is not a number.", field="sparsities",
                              fix="List sparsities in percent separated by commas, e.g. 50, 70, 90.") from None
        v = v / 100.0 if v > 1.0 else v
        if not 0.0 <= v < 1.0:
            raise StudioError(f"Sparsity {part} is out of range.", field="sparsities",
                              fix="Use values from 0 to 99 (percent).")
        values.append(v)
    if not values:
        raise StudioError("No sparsities given.", field="sparsities",
                          fix="List sparsities in percent separated by commas, e.g. 50, 70, 90.")
    return sorted(set(values))


def write_svg(widget: QWidget, path: str) -> None:
    """Render a widget as vector SVG with QSvgGenerator.

    (pyqtgraph 0.14's SVGExporter cannot parse the path syntax Qt 6.12 writes.)"""
    from PySide6.QtCore import QRect, QSize
    from PySide6.QtGui import QPainter
    from PySide6.QtSvg import QSvgGenerator

    generator = QSvgGenerator()
    generator.setFileName(path)
    generator.setSize(QSize(widget.width(), widget.height()))
    generator.setViewBox(QRect(0, 0, widget.width(), widget.height()))
    generator.setTitle("CHITA Studio sweep")
    painter = QPainter(generator)
    try:
        widget.render(painter)
    finally:
        painter.end()


SHORT_LABELS = {"magnitude": "Magnitude", "magnitude_layer": "Magnitude/layer", "obd": "OBD",
                "woodfisher": "WoodFisher"}  # axis ticks of a one-sparsity sweep: short enough to sit side by side


class SweepPlot(StudioPlot):
    """Accuracy (%) against sparsity (%) per method with FillBetweenItem 95% bands.
    ``point_clicked(method, sparsity)``: a point of a curve was clicked."""

    point_clicked = Signal(str, float)
    FIT_LEGEND = False  # its legend's visibility follows the sweep (none for one sparsity)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Accuracy against sparsity", parent)
        self.setLabel("bottom", "sparsity", units="%")
        self.setLabel("left", "top-1 accuracy", units="%")
        self.getPlotItem().showGrid(x=True, y=True, alpha=0.15)
        self.rows: list[tuple[str, float, Any]] = []
        self.dense: Any = None
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.bands: dict[str, pg.FillBetweenItem] = {}
        self.pattern = ""
        self.class_mode: tuple[str, dict] | None = None  # (method, class curves): one line per class
        self.set_message("Choose methods and sparsities, then press Run sweep")
        self.redraw()  # the empty axes in percent

    def _clicked(self, method: str, sparsities: list[float], points: Any) -> None:
        """The sweep's own sparsity nearest the clicked point (the plot's x is in percent)."""
        if len(points):
            x = points[0].pos().x() / 100
            self.point_clicked.emit(method, min(sparsities, key=lambda s: abs(s - x)))

    def set_data(self, rows: list[tuple[str, float, Any]], dense: Any = None, pattern: str = "") -> None:
        """Rows from :func:`sweep_rows`; ``dense`` is the dense model's EvalResult; ``pattern``
        the sweep's N:M pattern, if any (named in the title of a one-sparsity sweep)."""
        self.rows = rows
        self.dense = dense
        self.pattern = pattern
        self.redraw()

    def set_class_curves(self, method: str | None, curves: dict | None = None) -> None:
        """Draw ``method``'s accuracy per class against sparsity (``curves`` from
        :func:`core.sweep.class_curves`) instead of the methods; None: the methods again."""
        self.class_mode = (method, dict(curves)) if method and curves else None
        self.redraw()

    def redraw(self) -> None:
        item = self.getPlotItem()
        item.clear()
        self.curves, self.bands = {}, {}
        if not self.rows:  # empty: the axes in percent, as they will be (not 0–1)
            item.setRange(xRange=(0, 100), yRange=(0, 100), padding=0.02)
            return
        self.set_message(None)
        legend = item.legend if item.legend is not None else item.addLegend(offset=(10, -10))  # bottom left
        legend.clear()
        if self.class_mode is not None:
            self._draw_classes(legend)
            return
        methods = list(dict.fromkeys(m for m, _, _ in self.rows))
        sparsities = sorted({s for _, s, _ in self.rows})
        bottom = item.getAxis("bottom")
        if len(sparsities) == 1:  # one sparsity (a pattern's): the methods side by side
            self._draw_methods(methods, sparsities[0])
        else:
            self.set_title("Accuracy against sparsity")
            bottom.setTicks(None)
            self.setLabel("bottom", "sparsity", units="%")
        for i, method in enumerate(methods if len(sparsities) > 1 else ()):
            colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
            pts = sorted((s, ev) for m, s, ev in self.rows if m == method and ev is not None)
            if not pts:
                continue
            x = np.array([100 * s for s, _ in pts])
            acc = np.array([100 * ev.accuracy for _, ev in pts])
            lo = np.array([100 * ev.accuracy_ci[0] for _, ev in pts])
            hi = np.array([100 * ev.accuracy_ci[1] for _, ev in pts])
            c_lo = pg.PlotCurveItem(x, lo, pen=pg.mkPen(self.theme.qcolor(colour, 60)))
            c_hi = pg.PlotCurveItem(x, hi, pen=pg.mkPen(self.theme.qcolor(colour, 60)))
            item.addItem(c_lo)
            item.addItem(c_hi)
            band = pg.FillBetweenItem(c_lo, c_hi, brush=pg.mkBrush(self.theme.qcolor(colour, 55)))
            item.addItem(band)
            self.bands[method] = band
            self.curves[method] = item.plot(
                x, acc, pen=pg.mkPen(self.theme.qcolor(colour), width=2.5), symbol="o", symbolSize=8,
                symbolBrush=pg.mkBrush(self.theme.qcolor(colour)), symbolPen=pg.mkPen(self.theme.qcolor("panel")),
                name=METHOD_LABELS.get(method, method),
            )
            self.curves[method].sigPointsClicked.connect(
                lambda _item, points, *_, m=method, xs=[s for s, _ in pts]: self._clicked(m, xs, points))
        if self.dense is not None:
            line = pg.InfiniteLine(pos=100 * self.dense.accuracy, angle=0,
                                   pen=pg.mkPen(self.theme.palette.muted, width=1.5, style=Qt.PenStyle.DashLine),
                                   label=f"dense {100 * self.dense.accuracy:.1f}%",
                                   labelOpts={"position": 0.97, "color": self.theme.palette.muted,
                                              "anchors": [(1, 1), (1, 1)], "fill": self.theme.qcolor("panel", 200)})
            item.addItem(line)
            self.fit_text(line.label, [f"dense {100 * self.dense.accuracy:.1f}%", f"{100 * self.dense.accuracy:.1f}%"])
        legend.setVisible(len(sparsities) > 1)  # one sparsity: the axis names the methods
        legend.setLabelTextColor(self.theme.palette.fg)
        legend.setBrush(pg.mkBrush(self.theme.qcolor("panel", 220)))
        legend.setPen(pg.mkPen(self.theme.palette.border))
        item.enableAutoRange()
        ys = [100 * v for _, _, ev in self.rows if ev is not None for v in ev.accuracy_ci]
        if self.dense is not None:
            ys.append(100 * self.dense.accuracy)
        if ys:  # room above the highest band for the dense line's label (it ran into a small plot's title)
            self.keep_room_above(min(ys), max(ys), self.text_line)

    MAX_CLASS_LINES = 12  # more classes: those that lost most by the sparsest point

    def _clicked_class_point(self, method: str, sparsities: list[float], points: Any) -> None:
        """A class line's marker: its sweep point (the dense model's, at 0, is none)."""
        if len(points) and points[0].pos().x() > 0:
            self._clicked(method, sparsities, points)

    def _draw_classes(self, legend: Any) -> None:
        """One line per class (the dense model's accuracy at 0%), in distinct hues; with more than
        ``MAX_CLASS_LINES`` classes, those whose accuracy fell most by the sparsest point."""
        item = self.getPlotItem()
        method, curves = self.class_mode
        names = sorted(curves, key=lambda n: curves[n][-1][1] - curves[n][0][1])[:self.MAX_CLASS_LINES]
        shown = [n for n in curves if n in names]  # the classes' own order
        more = len(curves) > len(shown)
        self.set_title(f"{METHOD_LABELS.get(method, method)}: accuracy per class"
                       + (f" (the {len(shown)} of {len(curves)} that lost most)" if more else ""))
        self.getPlotItem().getAxis("bottom").setTicks(None)
        self.setLabel("bottom", "sparsity (0: dense)", units="%")
        points = sorted({s for m, s, _ in self.rows if m == method})
        for i, name in enumerate(shown):
            colour = pg.intColor(i, hues=max(len(shown), 6), values=1, maxValue=210, minValue=150)
            pts = curves[name]
            self.curves[name] = item.plot(
                [100 * s for s, _ in pts], [100 * a for _, a in pts], pen=pg.mkPen(colour, width=2),
                symbol="o", symbolSize=6, symbolBrush=pg.mkBrush(colour), symbolPen=None, name=name)
            self.curves[name].sigPointsClicked.connect(  # a sweep point, as on the methods' curves
                lambda _item, clicked, *_, m=method: self._clicked_class_point(m, points, clicked))
        legend.setVisible(True)
        legend.setLabelTextColor(self.theme.palette.fg)
        legend.setBrush(pg.mkBrush(self.theme.qcolor("panel", 220)))
        legend.setPen(pg.mkPen(self.theme.palette.border))
        item.enableAutoRange()

    def _draw_methods(self, methods: list[str], sparsity: float) -> None:
        """Each method's accuracy with its 95% interval as an error bar, the methods along x:
        a sweep at one sparsity (an N:M pattern's) compares methods, not sparsities."""
        item = self.getPlotItem()
        at = f"the {self.pattern} pattern ({100 * sparsity:.0f}%)" if self.pattern else f"{100 * sparsity:.0f}% sparsity"
        self.set_title(f"Accuracy by method at {at}")
        item.getAxis("bottom").setTicks([[(i, SHORT_LABELS.get(m, METHOD_LABELS.get(m, m)))
                                          for i, m in enumerate(methods)]])
        self.setLabel("bottom", "method", units=None)
        for i, method in enumerate(methods):
            ev = next((e for m, _, e in self.rows if m == method and e is not None), None)
            if ev is None:
                continue
            colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
            acc, (lo, hi) = 100 * ev.accuracy, (100 * ev.accuracy_ci[0], 100 * ev.accuracy_ci[1])
            item.addItem(pg.ErrorBarItem(x=np.array([i]), y=np.array([acc]), top=np.array([hi - acc]),
                                         bottom=np.array([acc - lo]), beam=0.25,
                                         pen=pg.mkPen(self.theme.qcolor(colour), width=2)))
            self.curves[method] = item.plot(
                [i], [acc], pen=None, symbol="o", symbolSize=10, symbolBrush=pg.mkBrush(self.theme.qcolor(colour)),
                symbolPen=pg.mkPen(self.theme.qcolor("panel")), name=METHOD_LABELS.get(method, method))
            self.curves[method].sigPointsClicked.connect(
                lambda *_a, m=method: self.point_clicked.emit(m, sparsity))
        item.setXRange(-0.6, len(methods) - 0.4, padding=0)


WORST_COLUMN = 6  # the Sweep table's worst-class column
VS_MAGNITUDE_COLUMN = 5


TABLE_SHARE = 0.5  # of the Sweep tab's width for the table at most (beyond it, columns are hidden)


class FitLineEdit(QLineEdit):
    """A line edit whose preferred width is its text's (up to 480 px), so that a row that wraps
    (:class:`gui.flow_layout.FlowLayout`) shows the whole list of sparsities."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        self.textChanged.connect(self.updateGeometry)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        hint = super().sizeHint()
        text = self.fontMetrics().horizontalAdvance(self.text() + "  ") + 16  # frame and margins
        return QSize(max(hint.width(), min(text, 480)), hint.height())


class SweepView(QWidget):
    """Controls, plot and table of a sweep. ``run_requested(methods, sparsities, samples)``;
    ``point_requested(method, sparsity)``: show that point like a run (double-click on its row
    or its marker, or *Show point*)."""

    run_requested = Signal(list, list, int)
    cancel_requested = Signal()
    point_requested = Signal(str, float)
    export_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.result: Any = None
        self.method_boxes: dict[str, QCheckBox] = {}
        # two rows that wrap where the window is narrow (presentation mode's large type on a
        # 1280-pixel projector): the methods, then the sweep's settings and buttons
        methods_row = FlowLayout()
        methods_row.addWidget(QLabel("Methods"))
        for m in METHODS:
            # the name without its parenthesis (in the tooltip): the row of six must not make the
            # window wider than a 1280-pixel screen
            label = METHOD_LABELS.get(m, m)
            short = "Magnitude per layer" if m == "magnitude_layer" else label.split(" (")[0]
            box = QCheckBox(short)
            box.setToolTip(label)
            box.setChecked(m in DEFAULT_METHODS)
            self.method_boxes[m] = box
            methods_row.addWidget(box)
        self.sparsities = FitLineEdit(DEFAULT_SPARSITIES)
        self.sparsities.setToolTip("Sparsities in percent, separated by commas")
        self.samples = QSpinBox()
        self.samples.setRange(16, 100_000)
        self.samples.setSingleStep(64)
        self.samples.setValue(1000)
        self.run_button = QPushButton("Run sweep")
        self.run_button.setObjectName("Primary")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.save_png = QPushButton("Save PNG…")
        self.save_svg = QPushButton("Save SVG…")
        self.save_csv = QPushButton("Save CSV…")
        for b in (self.save_png, self.save_svg, self.save_csv):
            b.setEnabled(False)
        self.show_point = QPushButton("Show point")
        self.show_point.setToolTip("Show the chosen point in the sidebar, the plots and the Runs tab, "
                                   "as a run: Export (Ctrl+E) then writes it (or double-click a row or a marker)")
        self.show_point.setEnabled(False)
        self.export_points = QPushButton("Export ONNX…")
        self.export_points.setToolTip("Export every point of the sweep to a folder, one ONNX file each "
                                      "(MODEL_METHOD_SPARSITY.onnx), each verified in ONNX Runtime")
        self.export_points.setEnabled(False)
        self._row_keys: list[tuple[str, float]] = []  # (method, sparsity) of each table row
        self.curves_box = QComboBox()
        self.curves_box.addItem("All methods", None)
        self.curves_box.setToolTip("Draw the methods' accuracy, or one method's accuracy per class against "
                                   "sparsity: which classes it gives up first")
        self.curves_box.setEnabled(False)
        self.curves_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.curves_box.currentIndexChanged.connect(self._apply_curves)
        settings_row = FlowLayout()
        settings_row.addWidget(pair("Sparsities (%)", self.sparsities))
        settings_row.addWidget(pair("Samples", self.samples))
        settings_row.addWidget(self.run_button)
        settings_row.addWidget(self.cancel_button)
        settings_row.addWidget(pair("Curves", self.curves_box))
        saves = FlowLayout(right=True)  # wraps where the window is narrow
        for b in (self.show_point, self.export_points, self.save_png, self.save_svg, self.save_csv):
            saves.addWidget(b)

        self.plot = SweepPlot()
        self.table = QTableWidget(0, 7)
        self.table.setHorizontalHeaderLabels(["Method", "Sparsity", "Accuracy", "95% interval",
                                              "vs dense, points", "vs magnitude, points", "Worst class"])
        self.table.horizontalHeaderItem(WORST_COLUMN).setToolTip(
            "The class whose accuracy fell most against the dense model on the same images, in points "
            "(bold: clear, its paired interval excludes 0 after allowing for all the classes; the cell's "
            "tooltip gives the three worst); show the point for all of them")
        self.images: Any = None  # the evaluation images the shown sweep was scored on
        self.table.horizontalHeaderItem(4).setToolTip(
            "Change in accuracy against the dense model on the same images, with its paired 95% "
            "interval (matched pairs: only the images one of the two gets right count)")
        self.table.horizontalHeaderItem(VS_MAGNITUDE_COLUMN).setToolTip(
            "Change in accuracy against magnitude pruning at the same sparsity, on the same images, "
            "with its paired 95% interval (tick Magnitude, global, among the methods to fill it)")
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setShowGrid(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        # where the table's share is narrower than its columns it hides the worst class, the
        # comparison with magnitude (first where it is empty), then the interval (the plot's
        # band) and the change against dense; a row's tooltip gives them
        self.columns = ColumnFitter(self.table, (WORST_COLUMN, VS_MAGNITUDE_COLUMN, 3, 4),
                                    shrink=0)  # and then the methods' names end in "…"
        self.splitter = splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.plot)
        splitter.addWidget(self.table)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([820, 440])
        self.table.setMinimumWidth(300)
        # plot and table share the width by fit_table as the window changes, until the user
        # drags the divider
        self._split_dragged = False
        splitter.splitterMoved.connect(lambda *_: setattr(self, "_split_dragged", True))
        self.status = QLabel("")
        self.status.setObjectName("Muted")
        self.status.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.addLayout(methods_row)
        layout.addLayout(settings_row)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.status)  # a line of its own: beside the buttons it widened the window
        layout.addLayout(saves)

        self.run_button.clicked.connect(self._on_run)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.save_png.clicked.connect(lambda: self.save_plot("png"))
        self.save_svg.clicked.connect(lambda: self.save_plot("svg"))
        self.save_csv.clicked.connect(self.save_csv_file)
        self.show_point.clicked.connect(self._request_chosen)
        self.export_points.clicked.connect(self.export_requested)
        self.table.cellDoubleClicked.connect(lambda r, _c: self._request_row(r))
        self.table.itemSelectionChanged.connect(
            lambda: self.show_point.setEnabled(bool(self.table.selectionModel().selectedRows())))
        self.plot.point_clicked.connect(self.point_requested)
        for key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):  # Enter on a chosen row shows it
            QShortcut(QKeySequence(key), self.table, self._request_chosen,
                      context=Qt.ShortcutContext.WidgetShortcut)

    # -- state --------------------------------------------------------------------------------
    def methods(self) -> list[str]:
        """Ticked methods, in METHODS order."""
        return [m for m, b in self.method_boxes.items() if b.isChecked()]

    def set_busy(self, busy: bool) -> None:
        """Disable Run while a sweep runs."""
        self.run_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

    def start_run(self) -> None:
        """A new sweep starts: clear the previous one; its points arrive with :meth:`set_result`."""
        self.result = None
        self.plot.set_data([], None)
        self.plot.set_message("Sweeping… each point appears here when it is done")
        self.table.setRowCount(0)
        self._row_keys = []
        for b in (self.save_png, self.save_svg, self.save_csv, self.show_point, self.export_points):
            b.setEnabled(False)

    def keep_partial(self) -> int:
        """After a cancelled sweep: keep the points it finished and allow saving them; returns
        how many there are."""
        if self.result is None or not getattr(self.result, "rows", ()):
            return 0
        self._enable_saves(True)
        return len(self.result.rows)

    def _enable_saves(self, on: bool) -> None:
        rows = bool(self.result is not None and sweep_rows(self.result))
        for b in (self.save_png, self.save_svg):
            b.setEnabled(on and rows)
        self.save_csv.setEnabled(on and rows and hasattr(self.result, "to_csv"))
        self.export_points.setEnabled(on and any(getattr(r, "result", None) is not None
                                                 for r in getattr(self.result, "rows", ())))

    def set_result(self, result: Any, dense: Any = None, final: bool = True, images: Any = None) -> None:
        """Show a core.sweep.SweepResult: the finished sweep, or with ``final`` False the points
        of a running one so far (saving waits for the end, or for :meth:`keep_partial`).
        ``images``: the evaluation ImageSet it was scored on (each point's worst class; kept with
        the result, None: the ones given before)."""
        chosen = self.chosen_point()
        self.result = result
        if images is not None:
            self.images = images
        rows = sweep_rows(result)
        self.plot.set_data(rows, dense, str(getattr(result, "meta", {}).get("pattern") or ""))
        self.table.setRowCount(len(rows))
        ordered = sorted(rows, key=lambda t: (METHODS.index(t[0]) if t[0] in METHODS else 99, t[1]))
        self._row_keys = [(m, s) for m, s, _ in ordered]
        for r, (method, sparsity, ev) in enumerate(ordered):
            tip = ("Double-click to show this point in the sidebar and the Runs tab; Export (Ctrl+E) then "
                   "writes it" if self.point_result(method, sparsity) is not None else
                   "This point's weights were not kept (the sweep keeps a limited amount): double-click "
                   "to set the Pruning panel to it, then Run (Ctrl+R)")
            cells = [
                METHOD_LABELS.get(method, method),
                f"{100 * sparsity:.0f}%",
                "–" if ev is None else f"{100 * ev.accuracy:.1f}%",
                "–" if ev is None else f"{100 * ev.accuracy_ci[0]:.1f}–{100 * ev.accuracy_ci[1]:.1f}",
                _vs_dense(ev, dense),
                _vs_magnitude(result, method, sparsity),
                "",  # the worst class: short, its full line in the tooltip (the table is tight)
            ]
            classes = class_changes(ev, dense, self.images)
            worst = most_changed(classes, 1)
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(tip)
                if c:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if c == WORST_COLUMN:
                    item.setText(f"{worst[0].name} {100 * worst[0].change.difference:+.1f}" if worst
                                 else worst_class_text(classes))
                    if worst:
                        item.setToolTip(describe_classes(classes))
                    if worst and worst[0].clear:  # clearly lower after allowing for all classes: bold
                        font = item.font()
                        font.setBold(True)
                        item.setFont(font)
                self.table.setItem(r, c, item)
        self._enable_saves(final)
        self._offer_class_curves()
        if chosen in self._row_keys:  # a point arriving keeps the row chosen
            self.table.selectRow(self._row_keys.index(chosen))
        self.fit_table()

    def _offer_class_curves(self) -> None:
        """The Curves chooser offers each method of the sweep with two sparsities or more (and
        its evaluation images known), keeping the choice where it can; the plot follows it."""
        box = self.curves_box
        choice = box.currentData()
        box.blockSignals(True)
        while box.count() > 1:
            box.removeItem(1)
        if self.images is not None and self.result is not None:
            for m in dict.fromkeys(r.method for r in self.result.rows):
                if len(self.result.series(m)) > 1:
                    box.addItem(f"{METHOD_LABELS.get(m, m)} per class", m)
        box.setCurrentIndex(max(0, box.findData(choice)))
        box.blockSignals(False)
        box.setEnabled(box.count() > 1)
        self._apply_curves()

    def _apply_curves(self) -> None:
        """Draw the methods, or the chosen method's accuracy per class (core.sweep.class_curves)."""
        from core.sweep import class_curves

        method = self.curves_box.currentData()
        if method is None or self.result is None or self.images is None:
            if self.plot.class_mode is not None:
                self.plot.set_class_curves(None)
            return
        self.plot.set_class_curves(method, class_curves(self.result, self.images, method))

    def forget_points(self) -> None:
        """Drop the points' kept weights (the model or data they belong to has gone): the plot,
        the table and saving stay; showing and exporting points do not."""
        rows = getattr(self.result, "rows", ())
        if any(getattr(r, "result", None) is not None for r in rows):
            self.result = replace(self.result, rows=tuple(replace(r, result=None) for r in rows))
            self.set_result(self.result, self.result.dense, final=self.save_csv.isEnabled())

    def point_result(self, method: str, sparsity: float) -> Any:
        """The kept PruneResult of a point (core.sweep.SweepRow.result), or None."""
        row = self.point_row(method, sparsity)
        return getattr(row, "result", None) if row is not None else None

    def point_row(self, method: str, sparsity: float) -> Any:
        """The sweep's row (core.sweep.SweepRow) of a point, or None."""
        return _row_of(self.result, method, sparsity)

    def chosen_point(self) -> tuple[str, float] | None:
        """(method, sparsity) of the table's chosen row, or None."""
        rows = self.table.selectionModel().selectedRows()
        if not rows or rows[0].row() >= len(self._row_keys):
            return None
        return self._row_keys[rows[0].row()]

    def _request_chosen(self) -> None:
        chosen = self.chosen_point()
        if chosen is not None:
            self.point_requested.emit(*chosen)

    def _request_row(self, row: int) -> None:
        if 0 <= row < len(self._row_keys):
            self.point_requested.emit(*self._row_keys[row])

    def fit_table(self) -> None:
        """Give the table's side of the splitter what its columns need, at most half the width
        (:data:`TABLE_SHARE`). Where they need more the table hides its least needed columns
        (:class:`ColumnFitter`) and takes only what the others need: the plot keeps the rest."""
        self.table.resizeColumnsToContents()
        widths = self.columns.widths()  # those hidden for room too: they come back where it fits
        chrome = self.table.verticalScrollBar().sizeHint().width() + 2 * self.table.frameWidth()
        need = sum(w for c, w in enumerate(widths) if self.columns.by_hand.get(c, True)) + chrome
        total = sum(self.splitter.sizes())
        if total > 0:
            limit = max(int(TABLE_SHARE * total), self.table.minimumWidth())
            if need > limit:
                need = self.columns.fit(limit - chrome) + chrome
            table_w = max(min(need, limit), self.table.minimumWidth())
            self.splitter.setSizes([total - table_w, table_w])

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        """The plot and the table share a new width as :meth:`fit_table` does, until the user
        drags the divider (a narrow window gave the plot its minimum and the table the rest)."""
        super().resizeEvent(event)
        if not self._split_dragged:
            self.fit_table()

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        if not self._split_dragged:
            self.fit_table()

    def apply_theme(self, theme: Theme) -> None:
        """Restyle the plot."""
        self.plot.apply_theme(theme)

    # -- saving -------------------------------------------------------------------------------
    def save_plot(self, kind: str, path: str | None = None) -> str | None:
        """Save the plot as PNG or SVG (asks for the path unless given)."""
        if path is None:
            flt = "PNG image (*.png)" if kind == "png" else "SVG image (*.svg)"
            path, _ = QFileDialog.getSaveFileName(self, f"Save plot as {kind.upper()}", f"sweep.{kind}", flt)
            if not path:
                return None
        if not path.lower().endswith(f".{kind}"):
            path += f".{kind}"
        item = self.plot.getPlotItem()
        if kind == "png":
            exporter = pg.exporters.ImageExporter(item)
            exporter.parameters()["width"] = max(1200, int(item.width()))
            exporter.export(path)
        else:
            write_svg(self.plot, path)
        self.status.setText(f"Saved {path}")
        return path

    def save_csv_file(self, path: str | None = None) -> str | None:
        """Save the sweep's rows with SweepResult.to_csv."""
        if self.result is None:
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Save sweep as CSV", "sweep.csv", "CSV (*.csv)")
            if not path:
                return None
        self.result.to_csv(path, self.images)
        self.status.setText(f"Saved {path}")
        return path

    # -- persistence ----------------------------------------------------------------------------
    def load_settings(self, s: QSettings) -> None:
        """Restore ticked methods, sparsities, samples and the table's columns chosen by hand."""
        self.columns.restore_choices(st.read(s, "sweep/columns", [], list))
        chosen = st.read(s, "sweep/methods", list(DEFAULT_METHODS), list)
        for m, b in self.method_boxes.items():
            b.setChecked(m in chosen)
        self.sparsities.setText(st.read(s, "sweep/sparsities", DEFAULT_SPARSITIES))
        self.samples.setValue(st.read(s, "sweep/samples", 1000, int))

    def save_settings(self, s: QSettings) -> None:
        """Store ticked methods, sparsities, samples and the table's columns chosen by hand."""
        s.setValue("sweep/columns", self.columns.choices())
        s.setValue("sweep/methods", self.methods())
        s.setValue("sweep/sparsities", self.sparsities.text())
        s.setValue("sweep/samples", int(self.samples.value()))

    def _on_run(self) -> None:
        from gui.dialogs import show_exception

        try:
            methods = self.methods()
            if not methods:
                raise StudioError("No method is ticked.", field="methods", fix="Tick at least one method to sweep.")
            sparsities = parse_sparsities(self.sparsities.text())
        except StudioError as exc:
            show_exception(self, exc, "Sweep")
            return
        self.run_requested.emit(methods, sparsities, int(self.samples.value()))


def paired_text(d: Any) -> str:
    """'+2.2 (+0.9 to +3.5)': a paired difference in points with its 95% interval, or '–'."""
    if d is None:
        return "–"
    return f"{100 * d.difference:+.1f} ({100 * d.ci[0]:+.1f} to {100 * d.ci[1]:+.1f})"


def _row_of(result: Any, method: str, sparsity: float) -> Any:
    """A sweep result's row for (method, sparsity), or None."""
    return next((r for r in getattr(result, "rows", ()) if getattr(r, "method", None) == method
                 and getattr(r, "sparsity", None) == sparsity), None)


def _vs_magnitude(result: Any, method: str, sparsity: float) -> str:
    """The row against magnitude at its sparsity, paired (:func:`paired_text`)."""
    row = _row_of(result, method, sparsity)
    return paired_text(result.versus(row) if row is not None and hasattr(result, "versus") else None)


def _vs_dense(ev: Any, dense: Any) -> str:
    """The change against dense with its paired interval (:func:`paired_text`)."""
    return paired_text(paired_or_none(ev, dense))
