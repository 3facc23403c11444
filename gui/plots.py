"""pyqtgraph views: weight and importance histograms, the importance heat map, the all-layer
overview, the per-layer sparsity comparison and the mask search's objective. Each view renders arrays it is given; none of
them computes anything expensive or touches the model."""

from __future__ import annotations

import functools
import html
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QFont, QFontMetrics, QResizeEvent
from PySide6.QtWidgets import QLabel, QWidget

from core.class_accuracy import called, lost_to_text, most_changed
from gui.theme import LIGHT, Theme

MAX_HIST_VALUES = 4_000_000  # a larger layer's histogram counts a random sample (scaled up)
MAX_HEAT_ROWS = 256
MAX_HEAT_COLS = 768
BINS = 80


def subsample(values: np.ndarray, limit: int | None = None) -> np.ndarray:
    """At most ``limit`` (default MAX_HIST_VALUES) values, drawn at random (with replacement: a
    draw without it sorts the whole layer, 84 ms for ResNet-50's 2.4 million weights) with a
    fixed seed so repaints do not flicker."""
    limit = MAX_HIST_VALUES if limit is None else limit
    values = np.asarray(values).ravel()
    if values.size <= limit:
        return values
    rng = np.random.default_rng(0)
    return values[rng.integers(0, values.size, size=limit)]


def histogram(values: np.ndarray, lo: float, hi: float, bins: int = BINS) -> np.ndarray:
    """Counts of ``values`` in ``bins`` equal bins over [lo, hi]: exact up to MAX_HIST_VALUES
    values; above, counted on a random sample and scaled to the whole (an estimate).

    Equal bins given by their range take numpy's arithmetic path: 14 ms for 2.4 million values,
    where the same edges given as an array sort the values in blocks (54 ms)."""
    values = np.asarray(values).ravel()
    sample = subsample(values)
    counts, _ = np.histogram(sample, bins=bins, range=(lo, hi))
    if sample.size < values.size:
        return counts * (values.size / sample.size)
    return counts


def log_saliency(saliency: np.ndarray) -> np.ndarray:
    """log10 of saliencies (any shape, float32 kept), zeros (weights no calibration gradient
    touches) set to the smallest positive one's log: the importance histogram and map both show
    this, computed once per layer."""
    s = np.asarray(saliency)
    if not np.issubdtype(s.dtype, np.floating):
        s = s.astype(np.float64)
    floor = float(np.min(s, where=s > 0, initial=np.inf)) if s.size else np.inf
    return np.log10(np.maximum(s, floor if np.isfinite(floor) else 1e-30))


def sampled_note(*sizes: int) -> str:
    """A histogram's tooltip line where a layer is larger than MAX_HIST_VALUES ("" otherwise)."""
    big = max(sizes, default=0)
    if big <= MAX_HIST_VALUES:
        return ""
    return (f"Counts estimated from {MAX_HIST_VALUES:,} weights drawn at random from the layer's "
            f"{big:,} (each histogram its own draw), scaled to the whole layer.")


def block_reduce(a: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Mean-pool a 2-D array down to at most ``rows`` × ``cols`` (padding with edge values)."""
    fr = max(1, int(np.ceil(a.shape[0] / rows)))
    fc = max(1, int(np.ceil(a.shape[1] / cols)))
    if fr == 1 and fc == 1:
        return a
    pr = (-a.shape[0]) % fr
    pc = (-a.shape[1]) % fc
    a = np.pad(a, ((0, pr), (0, pc)), mode="edge")
    return a.reshape(a.shape[0] // fr, fr, a.shape[1] // fc, fc).mean(axis=(1, 3))


def short_name(key: str) -> str:
    """'layer1.0.conv1.weight' → 'layer1.0.conv1'."""
    return key[:-7] if key.endswith(".weight") else key


def layer_ticks(names: list[str], max_labels: int = 15) -> tuple[list[list[tuple[int, str]]], bool]:
    """Bottom-axis ticks for one bar per layer: the layer names where they fit, else the layer
    numbers of the table; with many layers only every 2nd, 5th, 10th, … number is written (and
    the first, from every 5th on), about ``max_labels``, the others as unlabelled minor ticks.
    Returns (pyqtgraph tick levels, whether numbers stand for names)."""
    n = len(names)
    if not (n > 8 or sum(len(s) for s in names) > 90):
        return [[(i, names[i]) for i in range(n)]], False
    step, base = 1, 1
    while n / step > max_labels:
        for mult in (2, 5, 10):
            if n / (base * mult) <= max_labels or mult == 10:
                step = base * mult
                break
        base = step
    major = [(i, str(i + 1)) for i in range(n) if (i == 0 and step >= 5) or (i + 1) % step == 0]
    labelled = {i for i, _ in major}
    return [major, [(i, "") for i in range(n) if i not in labelled]], True


def _make_shrinkable(label: pg.LabelItem) -> None:
    """Let a pyqtgraph LabelItem be narrower than its text: a long title (large presentation
    fonts) then gets clipped instead of pushing the plot wider than its widget."""
    original = label.updateMin

    def update_min() -> None:
        original()
        height = label.itemRect().height()
        label.setMinimumWidth(0)
        label._sizeHint[Qt.SizeHint.MinimumSize] = (0, height)
        label._sizeHint[Qt.SizeHint.PreferredSize] = (0, height)
        label.updateGeometry()

    label.updateMin = update_min
    label._studio_shrinkable = True


def _fit_text(text: str, font: QFont, room: int, show: Callable[[str], object],
              drawn_width: Callable[[], float]) -> str:
    """Show ``text`` with ``show``, shortened with "…" where the width it is drawn at
    (``drawn_width()``, measured after showing it) exceeds ``room`` px; returns what is shown.
    The drawn text can be a little wider than ``font``'s metrics say, so up to three tries."""
    fit = max(30, room)
    shown = text
    for _ in range(3):
        shown = QFontMetrics(font).elidedText(text, Qt.TextElideMode.ElideRight, fit)
        show(shown)
        over = drawn_width() - room
        if over <= 0 or fit <= 30:
            break
        fit = max(30, int(fit - over - 2))
    return shown


LEGEND_SHARE = 0.25  # a legend covering more of the plot area than this is hidden (small plots)


class StudioPlot(pg.PlotWidget):
    """A themed PlotWidget with a centred message for empty states. On a small plot (presentation
    mode on a projector, a 1024-pixel screen) its overlays give way to the data: a legend that
    would cover more than ``LEGEND_SHARE`` of the plot area, or be cut at its edge, is hidden
    (its entries go to the plot's tooltip), and texts registered with ``fit_text`` are drawn in
    the longest form that fits from where they stand, or not at all."""

    FIT_LEGEND = True  # False where the subclass decides the legend's visibility itself

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every subclass's ``redraw`` fits the overlays once the new items are laid out."""
        super().__init_subclass__(**kwargs)
        draw = cls.__dict__.get("redraw")
        if draw is not None:
            @functools.wraps(draw)
            def redraw(self: StudioPlot, *args: Any, **kw: Any) -> Any:
                self._y_room = None  # set again by a redraw that keeps room for text (keep_room_above)
                out = draw(self, *args, **kw)
                self.fit_overlays_later()
                return out

            cls.redraw = redraw

    def __init__(self, title: str = "", parent: QWidget | None = None) -> None:
        self._fitted: list[tuple[pg.TextItem, tuple[str, ...]]] = []
        self._cut: list[str] = []  # registered texts shortened or hidden for room, whole
        self._y_room: tuple[float, float, float, Callable[[], float]] | None = None
        self._range_due = False  # a redraw asked for the y range to be fitted again
        self._range_height = 0.0  # the plot area's height the y range was fitted for
        self._legend_hidden = False
        self._tooltip = ""
        self._fit_timer = QTimer()
        self._fit_timer.setSingleShot(True)
        self._fit_timer.setInterval(0)
        super().__init__(parent)
        self._fit_timer.setParent(self)
        self._fit_timer.timeout.connect(self.fit_overlays)
        vb = self.getPlotItem().getViewBox()
        vb.sigResized.connect(self.fit_overlays_later)
        vb.sigRangeChanged.connect(self.fit_overlays_later)
        self.theme = Theme(LIGHT)
        self.title = title
        self.setMenuEnabled(False)
        self.getPlotItem().hideButtons()
        self.getPlotItem().showGrid(x=False, y=True, alpha=0.15)
        for name in ("left", "bottom"):
            self.getPlotItem().getAxis(name).enableAutoSIPrefix(False)
        self.setMinimumSize(200, 150)  # three in a row on a 1024-pixel screen; 720 px high in presentation mode
        self._message = QLabel(self)
        self._message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._message.setWordWrap(True)
        self._message.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self._message.hide()
        self.set_title(title)

    def set_title(self, text: str) -> None:
        """Plot title in the theme's colours, shortened with "…" to the plot's width (a narrow
        plot in presentation mode cut a long title off at both ends)."""
        self.title = text
        p = self.theme.palette
        item = self.getPlotItem()
        label = item.titleLabel
        if not getattr(label, "_studio_shrinkable", False):
            _make_shrinkable(label)
        size = self.theme.point_size * 1.05
        font = QFont(self.font())
        font.setPointSizeF(size)
        left = item.getAxis("left")
        width = self.width() - 24 - (int(left.width()) if left.isVisible() else 0)  # over the plot area
        self._title_shown = _fit_text(text, font, width,
                                      lambda t: item.setTitle(html.escape(t), color=p.fg, size=f"{size:.1f}pt"),
                                      lambda: label.item.boundingRect().width())

    def setToolTip(self, text: str) -> None:  # noqa: N802 - Qt API
        """The plot's tooltip; a hidden legend's entries are added to it."""
        self._tooltip = text
        self._show_tooltip()

    def _show_tooltip(self) -> None:
        """The plot's own tooltip, then what it left out for room: a hidden legend's entries, the
        whole texts of labels shortened or hidden ("← 347" for "← 347 with zero saliency")."""
        lines = [self.__dict__.get("_tooltip", "")]
        legend = self.getPlotItem().legend
        if self.__dict__.get("_legend_hidden") and legend is not None and legend.items:
            names = ", ".join(label.text for _sample, label in legend.items)
            lines.append(f"Legend (hidden: the plot is too small for it): {names}")
        if self.__dict__.get("_cut"):
            lines.append("Shortened or hidden for room: " + "; ".join(self._cut))
        super().setToolTip("\n\n".join(line for line in lines if line))

    def fit_text(self, item: pg.TextItem, texts: Sequence[str]) -> None:
        """Draw ``item`` (a TextItem or an InfiniteLine's label, already added) with the first of
        ``texts`` (longest first) that fits between its anchor and the plot area's edge, and
        hide it where none does. A horizontal line's label drawn above its line goes below it
        where the plot area has no room above (a line near the top: it ran into the title).
        Refitted on resizes; forgotten when the item leaves the plot."""
        if isinstance(item, pg.InfLineLabel):
            item._studio_anchors = list(item.anchors)
        self._fitted.append((item, tuple(texts)))
        self.fit_overlays_later()

    def fit_overlays_later(self, *_args: object) -> None:
        """Fit the overlays once the current layout pass is done."""
        timer = self.__dict__.get("_fit_timer")
        if timer is not None:
            timer.start()

    def fit_overlays(self) -> None:
        """Hide a legend that would crowd the plot area, and fit the registered texts to it."""
        item = self.getPlotItem()
        if item is None:  # closed
            return
        vb = item.getViewBox()
        width, height = vb.width(), vb.height()
        if width <= 1 or height <= 1:
            return
        legend = item.legend
        if self.FIT_LEGEND and legend is not None:
            if legend.items:
                box = legend.boundingRect()
                crowded = box.width() * box.height() > LEGEND_SHARE * width * height or box.width() > width
            else:
                crowded = False
            if crowded and legend.isVisible():
                legend.setVisible(False)
                self._legend_hidden = True
            elif not crowded and self._legend_hidden:
                legend.setVisible(True)
                self._legend_hidden = False
        # the y range again after a redraw, or where the plot's height changed (the room above
        # is in pixels), not after a zoom: that is the user's (it can change the axis's width)
        if self._range_due or abs(height - self._range_height) > 0.5:
            self._range_due = False
            self._fit_y_range()
        self._fitted = [(t, texts) for t, texts in self._fitted if t.scene() is not None]
        self._cut = [texts[0] for text_item, texts in self._fitted if not self._fit_one(vb, text_item, texts)]
        self._show_tooltip()

    def keep_room_above(self, bottom: float, top: float, pixels: Callable[[], float], below: float = 0.04) -> None:
        """Show y from ``bottom`` to ``top`` with ``pixels()`` px of room above ``top`` (for a
        line's label, a legend) and ``below`` of the span under ``bottom``, whatever the plot's
        height: a share of the span left a small plot too little room and a large one an empty
        band. Kept as the plot resizes, until the next redraw."""
        self._y_room = (bottom, top, below, pixels)
        self._range_due = True  # again once the overlays are fitted (a legend hidden frees room)
        self._fit_y_range()

    def text_line(self, lines: float = 1.0) -> float:
        """Pixels ``lines`` lines of the plot's text take, with a margin."""
        return QFontMetrics(self.font()).height() * 1.6 * lines + 4

    def _fit_y_range(self) -> None:
        room = self.__dict__.get("_y_room")
        vb = self.getPlotItem().getViewBox()
        if room is None or vb.height() <= 1:
            return
        bottom, top, below, pixels = room
        self._range_height = vb.height()
        span = max(top - bottom, 1e-9)
        share = min(0.6, pixels() / vb.height())  # of the view's height above ``top``
        low = bottom - below * span
        high = low + (top - low) / (1 - share)
        (_, _), (y0, y1) = vb.viewRange()
        if abs(y0 - low) > 1e-6 * span or abs(y1 - high) > 1e-6 * span:
            vb.setYRange(low, high, padding=0)

    @staticmethod
    def _fit_one(vb: pg.ViewBox, text_item: pg.TextItem, texts: tuple[str, ...]) -> bool:
        """Fit one registered text; True where it is drawn whole."""
        label = isinstance(text_item, pg.InfLineLabel)
        if label:
            anchors = getattr(text_item, "_studio_anchors", text_item.anchors)
            text_item.anchors = list(anchors)
            text_item.updatePosition()  # its anchor point for the current range
            if text_item.line.angle % 180 == 0 and all(a[1] == 1 for a in anchors):  # above a horizontal line
                y = vb.mapFromScene(text_item.scenePos()).y()
                height = text_item.boundingRect().height()
                if y - height < 0 and y + height <= vb.height():  # no room above, room below
                    text_item.anchors = [(a[0], 0) for a in anchors]
                    text_item.updatePosition()
        x = vb.mapFromScene(text_item.scenePos()).x()
        ax = float(text_item.anchor[0])
        room = {0.0: vb.width() - x, 1.0: x}.get(ax, 2 * min(x, vb.width() - x))
        for text in texts:
            if label:
                text_item.format = text.replace("{", "{{").replace("}", "}}")
            text_item.setText(text)
            if text_item.textItem.boundingRect().width() <= room:
                text_item.setVisible(True)
                return text == texts[0]
        text_item.setVisible(False)
        return False

    def set_message(self, text: str | None) -> None:
        """Show ``text`` over the plot (None hides it)."""
        if text:
            self._message.setText(text)
            self._message.setStyleSheet(f"color: {self.theme.palette.muted}; background: transparent;")
            self._message.show()
            self._place_message()
        else:
            self._message.hide()

    def setLabel(self, axis: str, text: str | None = None, units: str | None = None,  # noqa: N802 - Qt API
                 unitPrefix: str | None = None, **args: object) -> None:  # noqa: N803
        """An axis label, kept whole here and shown shortened with "…" to the axis's length
        where it is longer (a narrow plot cut it off at both ends)."""
        self.__dict__.setdefault("_axis_text", {})[axis] = (text, units)
        self.getPlotItem().setLabel(axis, text, units=units, unitPrefix=unitPrefix, **args)
        self.getPlotItem().getAxis(axis).resizeEvent(None)  # centred: pyqtgraph centres on resizes only
        self._fit_axis_label(axis)

    def axis_label(self, axis: str) -> str:
        """Axis ``axis``'s whole label (the drawn one may be shortened)."""
        text, _units = self.__dict__.get("_axis_text", {}).get(axis, (None, None))
        return text if text is not None else self.getPlotItem().getAxis(axis).labelText

    def _fit_axis_label(self, axis: str) -> None:
        """Show axis ``axis``'s label shortened to the plot area's length beside it."""
        text, units = self.__dict__.get("_axis_text", {}).get(axis, (None, None))
        if not text or units:
            return
        item = self.getPlotItem()
        ax = item.getAxis(axis)
        if axis in ("left", "right"):
            room = self.height() - int(item.getAxis("bottom").height()) - int(item.titleLabel.height()) - 16
        else:
            room = self.width() - int(item.getAxis("left").width()) - 16
        font = QFont(self.font())
        size = str(ax.labelStyle.get("font-size", "")).removesuffix("pt")
        if size:
            font.setPointSizeF(float(size))
        def show(shown: str) -> None:
            if shown != ax.labelText:
                ax.setLabel(shown)
                ax.resizeEvent(None)  # pyqtgraph centres a label on resizes only: centre the new one

        _fit_text(text, font, room, show, lambda: ax.label.boundingRect().width())

    def resizeEvent(self, ev: QResizeEvent) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(ev)
        if self.__dict__.get("plotItem") is None:  # being built, or closing (pyqtgraph let go of it)
            return
        self._place_message()
        if "theme" in self.__dict__ and self.__dict__.get("title"):  # shortened to the new width, or whole again
            self.set_title(self.title)
        for axis in self.__dict__.get("_axis_text", {}):
            self._fit_axis_label(axis)

    def _place_message(self) -> None:
        if "_message" not in self.__dict__:
            return  # resize during the base class constructor
        self._message.setGeometry(20, 40, max(10, self.width() - 40), max(10, self.height() - 80))

    def apply_theme(self, theme: Theme) -> None:
        """Restyle for a theme and redraw."""
        from gui.theme import style_plot

        self.theme = theme
        style_plot(self, theme)
        self.set_title(self.title)
        for axis in self.__dict__.get("_axis_text", {}):  # the new type's length
            self._fit_axis_label(axis)
        if self._message.isVisible():
            self.set_message(self._message.text())
        self.redraw()

    def redraw(self) -> None:
        """Redraw from the stored data (subclasses)."""


class WeightHistogram(StudioPlot):
    """Histogram of one layer's weights; kept weights highlighted; magnitude threshold as ±lines."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Weights", parent)
        self.setLabel("bottom", "weight value")
        self.setLabel("left", "count")
        self.log_counts = False
        self.values: np.ndarray | None = None
        self.kept: np.ndarray | None = None
        self.threshold: float | None = None
        self.kept_label = "kept"
        self.all_item: pg.PlotDataItem | None = None
        self.kept_item: pg.PlotDataItem | None = None
        self.lines: list[pg.InfiniteLine] = []
        self.set_message("Load a model to see its weights")

    def set_data(self, values: np.ndarray | None, kept: np.ndarray | None = None,
                 threshold: float | None = None, kept_label: str = "kept") -> None:
        """``values``: the layer's dense weights; ``kept``: the weights after pruning (nonzeros)."""
        self.values = None if values is None else np.asarray(values).ravel()
        self.kept = None if kept is None else np.asarray(kept).ravel()
        self.setToolTip(sampled_note(*(v.size for v in (self.values, self.kept) if v is not None)))
        self.threshold = threshold
        self.kept_label = kept_label
        self.redraw()

    def set_log(self, on: bool) -> None:
        """Log-scale counts."""
        self.log_counts = bool(on)
        self.redraw()

    def redraw(self) -> None:
        p = self.theme.palette
        item = self.getPlotItem()
        item.clear()
        self.all_item = self.kept_item = None
        self.lines = []
        if self.values is None or self.values.size == 0:
            return
        self.set_message(None)
        lo, hi = float(self.values.min()), float(self.values.max())
        if lo == hi:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, BINS + 1)
        counts = histogram(self.values, lo, hi)
        item.setLogMode(False, self.log_counts)
        legend = item.legend if item.legend is not None else item.addLegend(offset=(-8, 8))
        self.all_item = item.plot(edges, self._counts(counts), stepMode="center", fillLevel=self._floor(),
                                  brush=pg.mkBrush(self.theme.qcolor("dense", 110)),
                                  pen=pg.mkPen(p.dense, width=1), name="all weights")
        if self.kept is not None:
            kc = histogram(self.kept, lo, hi)
            self.kept_item = item.plot(edges, self._counts(kc), stepMode="center", fillLevel=self._floor(),
                                       brush=pg.mkBrush(self.theme.qcolor("accent", 140)),
                                       pen=pg.mkPen(p.accent, width=1.5), name=self.kept_label)
        if self.threshold is not None and self.threshold > 0:
            pen = pg.mkPen(p.pruned, width=2, style=Qt.PenStyle.DashLine)
            for sign in (-1, 1):
                label = f"{'+' if sign > 0 else '−'}{self.threshold:.3g}"
                anchor = (0, 0.5) if sign > 0 else (1, 0.5)  # text outside the ± band
                opts = {"position": 0.55, "color": p.pruned, "fill": self.theme.qcolor("panel", 210),
                        "anchors": [anchor, anchor]}
                line = pg.InfiniteLine(pos=sign * self.threshold, angle=90, pen=pen, label=label, labelOpts=opts)
                item.addItem(line, ignoreBounds=True)
                self.fit_text(line.label, [label])  # outside the band, or not at all
                self.lines.append(line)
        legend.setLabelTextColor(p.fg)
        legend.setBrush(pg.mkBrush(self.theme.qcolor("panel", 210)))
        self.setLabel("left", "count (log)" if self.log_counts else "count")
        item.enableAutoRange()

    def _counts(self, counts: np.ndarray) -> np.ndarray:
        c = counts.astype(float)
        if self.log_counts:
            c = np.where(c > 0, c, 0.5)  # keep empty bins drawable on a log axis
        return c

    def _floor(self) -> float:
        return float(np.log10(0.5)) if self.log_counts else 0.0


class ImportanceHistogram(StudioPlot):
    """Histogram of log10 per-weight saliency, split into kept and pruned weights."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Importance", parent)
        self.setLabel("bottom", "log₁₀ saliency ½·F·w²")
        self.setLabel("left", "count")
        self.saliency: np.ndarray | None = None
        self.logs: np.ndarray | None = None  # log_saliency(saliency), flat
        self.mask: np.ndarray | None = None
        self.kept_item: pg.PlotDataItem | None = None
        self.pruned_item: pg.PlotDataItem | None = None
        self.zero_note: pg.TextItem | None = None  # how many weights sit at the left edge with saliency 0
        self.set_message("Importance is computed after loading")

    def set_data(self, saliency: np.ndarray | None, mask: np.ndarray | None = None) -> None:
        """``saliency`` of the layer's weights; ``mask`` True where a weight is kept."""
        self.saliency = None if saliency is None else np.asarray(saliency).ravel()
        self.logs = None if self.saliency is None else log_saliency(self.saliency)
        self.mask = None if mask is None else np.asarray(mask, dtype=bool).ravel()
        self.setToolTip(sampled_note(self.saliency.size) if self.saliency is not None else "")
        self.redraw()

    def redraw(self) -> None:
        p = self.theme.palette
        item = self.getPlotItem()
        item.clear()
        self.kept_item = self.pruned_item = self.zero_note = None
        if self.saliency is None or self.saliency.size == 0:
            return
        self.set_message(None)
        s, logs = self.saliency, self.logs
        lo, hi = float(logs.min()), float(logs.max())
        if lo == hi:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, BINS + 1)
        if item.legend is None:
            item.addLegend(offset=(-8, 8))
        if self.mask is not None and self.mask.size == logs.size:
            kc = histogram(logs[self.mask], lo, hi)
            pc = histogram(logs[~self.mask], lo, hi)
            first = float(kc[0] + pc[0])  # all weights in the edge bin
            self.kept_item = item.plot(edges, kc, stepMode="center", fillLevel=0,
                                       brush=pg.mkBrush(self.theme.qcolor("accent", 140)),
                                       pen=pg.mkPen(p.accent, width=1.5), name="kept")
            self.pruned_item = item.plot(edges, pc, stepMode="center", fillLevel=0,
                                         brush=pg.mkBrush(self.theme.qcolor("pruned", 120)),
                                         pen=pg.mkPen(p.pruned, width=1.5), name="pruned")
        else:
            c = histogram(logs, lo, hi)
            first = float(c[0])
            self.kept_item = item.plot(edges, c, stepMode="center", fillLevel=0,
                                       brush=pg.mkBrush(self.theme.qcolor("accent", 140)),
                                       pen=pg.mkPen(p.accent, width=1.5), name="all weights")
        zeros = int((s <= 0).sum())
        if zeros:  # weights no calibration gradient touches (dead units, constant-zero inputs)
            # halfway up the edge bin, inside the data's range (autorange ignores text)
            self.zero_note = pg.TextItem(f"← {zeros:,} with zero saliency", color=p.muted, anchor=(0, 0.5),
                                         fill=pg.mkBrush(self.theme.qcolor("panel", 200)))
            self.zero_note.setFont(self.theme.font(0.85))
            self.zero_note.setPos(lo, first / 2)
            item.addItem(self.zero_note)
            self.fit_text(self.zero_note, [f"← {zeros:,} with zero saliency", f"← {zeros:,} zero saliency",
                                           f"← {zeros:,}"])
        if item.legend is not None:
            item.legend.setLabelTextColor(p.fg)
            item.legend.setBrush(pg.mkBrush(self.theme.qcolor("panel", 210)))
        item.enableAutoRange()


class ImportanceHeatMap(StudioPlot):
    """The weight matrix coloured by log10 saliency (or |w|); pruned weights dimmed."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Importance map", parent)
        self.setLabel("bottom", "input")
        self.setLabel("left", "output")
        self.getPlotItem().showGrid(x=False, y=False)
        self.getPlotItem().invertY(True)
        self.image = pg.ImageItem()
        self.overlay = pg.ImageItem()
        self.addItem(self.image)
        self.addItem(self.overlay)
        self.colorbar: pg.ColorBarItem | None = None
        self.values: np.ndarray | None = None
        self.mask: np.ndarray | None = None
        self.quantity = "log₁₀ saliency"
        self.columns_label = "input"
        self.set_message("Select a layer")

    def set_data(self, values: np.ndarray | None, mask: np.ndarray | None = None,
                 quantity: str = "log₁₀ saliency", columns_label: str = "input") -> None:
        """``values``: 2-D per-weight importance (already log-scaled if wanted); ``mask``: kept;
        ``columns_label``: the bottom axis (``gui.jobs.matrix_columns_label``)."""
        self.values = None if values is None else np.asarray(values, dtype=np.float32)
        self.mask = None if mask is None else np.asarray(mask, dtype=np.float32)
        self.quantity = quantity
        self.columns_label = columns_label
        self.redraw()

    def redraw(self) -> None:
        p = self.theme.palette
        if self.values is None or self.values.size == 0:
            self.image.clear()
            self.overlay.clear()
            return
        self.set_message(None)
        v = block_reduce(self.values, MAX_HEAT_ROWS, MAX_HEAT_COLS)
        h, w = self.values.shape
        rect = (0, 0, w, h)
        cmap = pg.colormap.get(p.colormap)
        finite = v[np.isfinite(v)]
        lo, hi = (float(np.percentile(finite, 1)), float(np.percentile(finite, 99.5))) if finite.size else (0.0, 1.0)
        if hi <= lo:
            hi = lo + 1e-6
        self.image.setImage(v, levels=(lo, hi), rect=rect)
        self.image.setColorMap(cmap)
        if self.colorbar is None:
            self.colorbar = pg.ColorBarItem(values=(lo, hi), colorMap=cmap, interactive=False, width=14,
                                            colorMapMenu=False)
            self.colorbar.setImageItem(self.image, insert_in=self.getPlotItem())
        else:
            self.colorbar.setColorMap(cmap)
            self.colorbar.setLevels((lo, hi))
        axis = self.colorbar.axis
        axis.setTextPen(pg.mkPen(p.muted))
        axis.setPen(pg.mkPen(p.border))
        axis.setStyle(tickFont=self.theme.font(0.85))
        if self.mask is not None and self.mask.shape == self.values.shape:
            pruned = 1.0 - block_reduce(self.mask, MAX_HEAT_ROWS, MAX_HEAT_COLS)
            rgba = np.zeros(pruned.shape + (4,), dtype=np.ubyte)
            c = self.theme.qcolor("border" if p.name == "light" else "panel")
            rgba[..., 0], rgba[..., 1], rgba[..., 2] = c.red(), c.green(), c.blue()
            rgba[..., 3] = (pruned * 225).astype(np.ubyte)
            self.overlay.setImage(rgba, levels=None, rect=rect)
            self.overlay.show()
        else:
            self.overlay.clear()
            self.overlay.hide()
        self.getPlotItem().setRange(xRange=(0, w), yRange=(0, h), padding=0)
        self.setLabel("bottom", self.columns_label if w != 1 else "")


class LayerOverview(StudioPlot):
    """|w| spread of every prunable layer: 25–75% boxes, 5–95% whiskers, median; the global
    magnitude threshold as a horizontal line; the chosen layer highlighted; layers the shown
    result left dense drawn muted (the threshold does not apply to them)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Weight spread per layer (|w|)", parent)
        self.setLabel("left", "|w|")
        self.keys: list[str] = []
        self.percentiles: Mapping[str, Sequence[float]] = {}
        self.selected: str | None = None
        self.threshold: float | None = None
        self.dense: set[str] = set()
        self.boxes: pg.BarGraphItem | None = None
        self.set_message("Layer overview appears after loading")

    def set_data(self, keys: list[str], percentiles: Mapping[str, Sequence[float]]) -> None:
        """Layers in order and their |w| percentiles (5, 25, 50, 75, 95)."""
        self.keys = [k for k in keys if k in percentiles]
        self.percentiles = percentiles
        self.redraw()

    def set_selected(self, key: str | None) -> None:
        """Highlight one layer."""
        self.selected = key
        self.redraw()

    def set_threshold(self, threshold: float | None, dense: Sequence[str] = ()) -> None:
        """Global magnitude threshold (None hides the line), and the layers kept dense."""
        self.threshold = threshold
        self.dense = set(dense)
        self.redraw()

    def redraw(self) -> None:
        p = self.theme.palette
        item = self.getPlotItem()
        item.clear()
        self.boxes = None
        if not self.keys:
            return
        self.set_message(None)
        n = len(self.keys)
        x = np.arange(n, dtype=float)
        q = np.array([self.percentiles[k] for k in self.keys], dtype=float)
        brushes = [self.theme.qcolor("muted" if k in self.dense else "accent", 230 if k == self.selected else 110)
                   for k in self.keys]
        pens = [pg.mkPen(p.accent if k == self.selected else p.dense, width=2 if k == self.selected else 1)
                for k in self.keys]
        err = pg.ErrorBarItem(x=x, y=q[:, 2], top=q[:, 4] - q[:, 2], bottom=q[:, 2] - q[:, 0], beam=0.25,
                              pen=pg.mkPen(p.muted, width=1.2))
        item.addItem(err)
        self.boxes = pg.BarGraphItem(x=x, y0=q[:, 1], y1=q[:, 3], width=0.6, brushes=brushes, pens=pens)
        item.addItem(self.boxes)
        item.plot(x, q[:, 2], pen=None, symbol="s", symbolSize=7, symbolBrush=pg.mkBrush(p.fg),
                  symbolPen=pg.mkPen(p.fg))
        if self.threshold is not None and self.threshold > 0:
            line = pg.InfiniteLine(pos=self.threshold, angle=0,
                                   pen=pg.mkPen(p.pruned, width=2, style=Qt.PenStyle.DashLine),
                                   label=f"magnitude threshold {self.threshold:.3g}",
                                   labelOpts={"position": 0.98, "color": p.pruned, "anchors": [(1, 1), (1, 1)],
                                              "fill": self.theme.qcolor("panel", 200)})
            item.addItem(line)
            value = f"{self.threshold:.3g}"
            self.fit_text(line.label, [f"magnitude threshold {value}", f"threshold {value}", value])
        ticks, compact = layer_ticks([short_name(k) for k in self.keys])
        item.getAxis("bottom").setTicks(ticks)
        self.setLabel("bottom", "layer # (as in the table)" if compact else "")
        item.setXRange(-0.7, n - 0.3, padding=0)
        item.enableAutoRange(axis="y")


HEADROOM = 1.25  # the sparsity bars' y range over 100%: room for the legend above the bars


class SparsityBars(StudioPlot):
    """Per-layer sparsity of the chosen method next to magnitude pruning at the same sparsity."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Sparsity per layer", parent)
        self.setLabel("left", "sparsity", units="%")
        self.keys: list[str] = []
        self.series: list[tuple[str, Mapping[str, float], str]] = []
        self.bars: list[pg.BarGraphItem] = []
        self.set_message("Move the sparsity slider or press Run")

    def set_data(self, keys: list[str], series: list[tuple[str, Mapping[str, float], str]]) -> None:
        """``series``: (label, layer key → sparsity, palette colour name) per bar group."""
        self.keys = list(keys)
        self.series = [s for s in series if s[1]]
        self.redraw()

    def redraw(self) -> None:
        item = self.getPlotItem()
        item.clear()
        self.bars = []
        if item.legend is not None:
            item.legend.clear()
        if not self.keys or not self.series:
            return
        self.set_message(None)
        legend = item.legend if item.legend is not None else item.addLegend(offset=(8, 8), colCount=2)
        n = len(self.keys)
        k = len(self.series)
        width = 0.8 / k
        for j, (label, values, colour) in enumerate(self.series):
            x = np.arange(n) - 0.4 + width * (j + 0.5)
            h = np.array([100.0 * float(values.get(key, 0.0)) for key in self.keys])
            bar = pg.BarGraphItem(x=x, height=h, width=width * 0.92, brush=self.theme.qcolor(colour, 200),
                                  pen=pg.mkPen(self.theme.qcolor(colour)))
            item.addItem(bar)
            legend.addItem(bar, label)
            self.bars.append(bar)
        legend.setLabelTextColor(self.theme.palette.fg)
        legend.setBrush(pg.mkBrush(self.theme.qcolor("panel", 210)))
        ticks, compact = layer_ticks([short_name(key) for key in self.keys])
        item.getAxis("bottom").setTicks(ticks)
        self.setLabel("bottom", "layer # (as in the table)" if compact else "")
        item.setXRange(-0.7, n - 0.3, padding=0)
        # headroom above 100% for the legend, so it never covers a bar; ticks stop at 100
        item.setYRange(0, 100 * HEADROOM, padding=0)
        item.getAxis("left").setTicks([[(v, str(v)) for v in range(0, 101, 20)],
                                       [(v, "") for v in range(10, 100, 20)]])


class SensitivityBars(StudioPlot):
    """Each layer pruned alone by magnitude (core.sensitivity): its increase in calibration
    loss over the dense network, one bar per layer (Run ▸ Layer sensitivity)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Each layer pruned alone", parent)
        self.setLabel("left", "loss increase")
        self.keys: list[str] = []
        self.values: dict[str, float] = {}
        self.selected: str | None = None
        self.bars: pg.BarGraphItem | None = None
        self.set_message("Run ▸ Layer sensitivity (Ctrl+Shift+L) prunes each layer alone at the slider's sparsity")

    def set_selected(self, key: str | None) -> None:
        """Highlight the chosen layer's bar (as the Spread tab highlights its box)."""
        self.selected = key
        self.redraw()

    def set_data(self, keys: list[str], values: Mapping[str, float], sparsity: float | None = None) -> None:
        """``values``: layer key → loss change when that layer alone is pruned at ``sparsity``
        (empty: cleared, the hint shown again)."""
        self.keys, self.values = list(keys), dict(values)
        self.set_title("Each layer pruned alone" if sparsity is None else
                       f"Each layer pruned alone at {100 * sparsity:.0f}%")
        self.redraw()

    def redraw(self) -> None:
        item = self.getPlotItem()
        item.clear()
        self.bars = None
        if not self.keys or not self.values:
            self.set_message("Run ▸ Layer sensitivity (Ctrl+Shift+L) prunes each layer alone at the "
                             "slider's sparsity")
            return
        self.set_message(None)
        h = np.array([float(self.values.get(key, 0.0)) for key in self.keys])
        brushes = [self.theme.qcolor("accent" if key == self.selected else "compare", 200) for key in self.keys]
        self.bars = pg.BarGraphItem(x=np.arange(len(self.keys)), height=h, width=0.8, brushes=brushes,
                                    pen=pg.mkPen(self.theme.qcolor("compare")))
        item.addItem(self.bars)
        ticks, compact = layer_ticks([short_name(key) for key in self.keys])
        item.getAxis("bottom").setTicks(ticks)
        self.setLabel("bottom", "layer # (as in the table)" if compact else "")
        item.setXRange(-0.7, len(self.keys) - 0.3, padding=0)
        item.enableAutoRange(axis="y")


class ClassBars(StudioPlot):
    """Accuracy change per class against the dense model, or magnitude at the same sparsity, on
    the same images (core.class_accuracy): one bar per class with its paired 95% interval, clear losses in the
    theme's "bad" colour and clear gains in its "good" one, and a dashed line at the change over
    all images. With more than ``MAX_BARS`` classes, the ``MAX_BARS`` that lost most."""

    MAX_BARS = 30
    HINT = "Move the sparsity slider or press Run: each class's accuracy change against dense shows here"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Change per class", parent)
        self.setLabel("left", "change vs dense (points)")
        self.against = "dense"
        self.scores: tuple = ()
        self.shown: list = []  # the ClassScores drawn, left to right
        self.overall: float | None = None
        self.bars: pg.BarGraphItem | None = None
        self.set_message(self.HINT)
        self.on_class: Callable[[str], None] | None = None  # told about a clicked bar, in words
        self.on_pick: Callable[[object], None] | None = None  # told the clicked bar's ClassScore
        self.scene().sigMouseClicked.connect(self._clicked)

    def class_at(self, x: float) -> object | None:
        """The ClassScore drawn at data x (a bar's centre ± 0.4), or None."""
        i = int(round(x))
        return self.shown[i] if 0 <= i < len(self.shown) and abs(x - i) <= 0.4 else None

    def describe_class(self, score: object) -> str:
        """'bird: 62.50% (dense 89.77%), −27.27 points [−36.06, −17.27], clear; 24 images lost:
        7 to airplane, …' for a class drawn here."""
        ch = score.change
        text = (f"{called(score)}: {100 * score.accuracy:.2f}% ({self.against} "
                f"{100 * score.reference_accuracy:.2f}%), {100 * ch.difference:+.2f} points "
                f"[{100 * ch.ci[0]:+.2f}, {100 * ch.ci[1]:+.2f}] on {score.n:,} images"
                + (", clear" if score.clear else ""))
        lost = lost_to_text(score)
        return text + (f"; {lost}" if lost else "")

    def _clicked(self, event: object) -> None:
        """A click on a bar tells ``on_class`` that class's numbers and where its lost images went,
        and ``on_pick`` its ClassScore."""
        if not self.shown:
            return
        score = self.class_at(self.getPlotItem().vb.mapSceneToView(event.scenePos()).x())
        if score is not None:
            if self.on_class is not None:
                self.on_class(self.describe_class(score))
            if self.on_pick is not None:
                self.on_pick(score)

    def _tick_labels(self, shown: Sequence) -> list[str] | None:
        """The classes' names for the bottom axis: on one row where they fit whole, else on two
        staggered rows (every other name a line lower, so each has two bars' width), shortened
        with '…' where even that is too narrow; None where fewer than three characters of a name
        would be left or two names would read alike (then the axis gives numbers)."""
        from PySide6.QtGui import QFontMetrics

        metrics = QFontMetrics(self.getPlotItem().getAxis("bottom").style.get("tickFont") or self.font())
        slot = max(1.0, (self.width() - 70) / max(1, len(shown)) - 6)  # axis and a gap between labels
        names = [s.name for s in shown]
        if all(metrics.horizontalAdvance(name) <= slot for name in names):
            return names
        staggered = len(names) > 1
        if staggered:
            slot = 2 * slot + 6  # a name's neighbours are on the other row
        out = []
        for name in names:
            if metrics.horizontalAdvance(name) > slot:
                name = metrics.elidedText(name, Qt.TextElideMode.ElideRight, int(slot))
                if len(name.rstrip("…")) < 3:
                    return None
            out.append(name)
        if len(set(out)) < len(out):  # shortened alike ("a long na…"): they would not tell classes apart
            return None
        return ["\n" + name if staggered and i % 2 else name for i, name in enumerate(out)]

    def resizeEvent(self, ev: QResizeEvent) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(ev)
        if getattr(self, "shown", None) and self.getPlotItem() is not None:  # names shortened to the new width
            self.redraw()

    def set_data(self, scores: Sequence, overall: float | None = None, title: str = "",
                 against: str = "dense") -> None:
        """``scores``: :class:`core.class_accuracy.ClassScore` per class, each with its change
        against ``against`` ("dense" or "magnitude"; empty: cleared, a hint shown); ``overall``:
        the change over all images (a fraction), drawn as a dashed line; ``title`` names the run."""
        self.scores = tuple(s for s in scores if s.change is not None)
        self.overall = overall
        self.against = against
        self.setLabel("left", f"change vs {against} (points)")
        self.set_title(f"Change per class · {title}" if title else "Change per class")
        self.redraw()

    def redraw(self) -> None:
        item = self.getPlotItem()
        item.clear()
        self.bars = None
        if not self.scores:
            self.shown = []
            self.set_message(self.HINT if self.against == "dense" else
                             "Nothing to compare with magnitude: run a method other than magnitude "
                             "(or choose the dense model above)")
            return
        self.set_message(None)
        many = len(self.scores) > self.MAX_BARS
        shown = (sorted(self.scores, key=lambda s: (s.change.difference, s.label))[:self.MAX_BARS]
                 if many else list(self.scores))
        self.shown = shown
        x = np.arange(len(shown), dtype=float)
        h = np.array([100.0 * s.change.difference for s in shown])
        lo = np.array([100.0 * s.change.ci[0] for s in shown])
        hi = np.array([100.0 * s.change.ci[1] for s in shown])

        def colour(s) -> str:
            if not s.clear:
                return "accent"
            return "bad" if s.change.difference < 0 else "good"

        brushes = [self.theme.qcolor(colour(s), 200) for s in shown]
        self.bars = pg.BarGraphItem(x=x, height=h, width=0.7, brushes=brushes,
                                    pens=[pg.mkPen(self.theme.qcolor(colour(s))) for s in shown])
        item.addItem(self.bars)
        item.addItem(pg.ErrorBarItem(x=x, y=h, top=hi - h, bottom=h - lo, beam=0.2,
                                     pen=pg.mkPen(self.theme.palette.fg, width=1)))
        p = self.theme.palette
        item.addItem(pg.InfiniteLine(pos=0.0, angle=0, pen=pg.mkPen(p.muted, width=1)))
        if self.overall is not None:  # named on the axis below: a label here would cover bars
            item.addItem(pg.InfiniteLine(pos=100.0 * self.overall, angle=0,
                                         pen=pg.mkPen(p.muted, width=1, style=Qt.PenStyle.DashLine)))
        labels = self._tick_labels(shown)
        by_name = labels is not None
        # names that do not fit even shortened: the class numbers (a click on a bar names it)
        item.getAxis("bottom").setTicks([[(i, labels[i] if by_name else str(s.label))
                                          for i, s in enumerate(shown)]])
        what = "class" if by_name or all(s.name == str(s.label) for s in shown) else "class number"
        if many:
            what = f"{what}: the {len(shown)} of {len(self.scores)} classes that lost most"
        clear = sum(1 for s in self.scores if s.clear)
        dashed = "" if self.overall is None else f" · dashed: all images {100 * self.overall:+.1f}"
        self.setLabel("bottom", f"{what}{dashed} · {'coloured: clear' if clear else 'none clear'}")
        worst = [f"{called(w)} {100 * w.change.difference:+.1f}: {lost_to_text(w)}"
                 for w in most_changed(self.scores, 3) if lost_to_text(w)]
        self.setToolTip(f"Bars: accuracy change on each class's images against "
                        f"{'the dense model' if self.against == 'dense' else 'magnitude at the same sparsity'}, "
                        f"with paired 95% intervals. A change is clear (coloured) when it excludes 0 "
                        f"even after allowing for the {len(self.scores)} classes compared at once "
                        f"(Bonferroni): {clear} of {len(self.scores)} here."
                        + ("\n\nWhere the images went:\n" + "\n".join(worst) if worst else "")
                        + "\n\nClick a bar for its class.")
        item.setXRange(-0.7, len(shown) - 0.3, padding=0)
        item.enableAutoRange(axis="y")


def objective_series(result: object) -> dict | None:
    """What :class:`ObjectivePlot` draws for a pruning result, as plain numbers, or None where
    the run has no mask search (magnitude, OBD, WoodFisher).

    Every objective is given relative to the backsolve on the magnitude mask at the same G, λ
    and size, in percent (0: magnitude's own weights re-solved; below 0: a better mask), and so
    is the floor that no mask of that size goes below (``info["final"]``'s
    ``objective_lower_bound``; None with the first-order term). One solve (CHITA): its trace,
    one point per verified refresh of the search. Several (CHITA++): one point per stage, its
    final objective, against its own stage's magnitude backsolve.
    """
    info = getattr(result, "info", {}) or {}
    finals = [f for f in info.get("final", []) if f.get("magnitude_objective")]
    if not finals:
        return None
    if len(finals) == 1:
        f = finals[0]
        trace = [float(t) for t in getattr(result, "objective_trace", ()) or (f["objective"],)]
        return {"kind": "trace", "x": list(range(len(trace))),
                "y": [_rel(t, f["magnitude_objective"]) for t in trace],
                "floor": _rel(f.get("objective_lower_bound"), f["magnitude_objective"]),
                "iterations": int(f.get("iterations", 0)), "converged": bool(f.get("converged")),
                "sparsity": float(f["sparsity"])}
    return stages_series(finals)


def _rel(value: float | None, mag: float) -> float | None:
    """``value`` relative to the magnitude backsolve ``mag``, in percent (None stays None)."""
    return None if value is None else 100.0 * (float(value) / float(mag) - 1.0)


def stages_series(finals: Sequence[Mapping]) -> dict | None:
    """:func:`objective_series` for CHITA++ from its stages' records (``info["final"]``, or the
    ``on_stage`` records of a run still going: then ``stages`` says how many there will be)."""
    finals = [f for f in finals if f.get("magnitude_objective")]
    if not finals:
        return None
    rel = _rel
    return {"kind": "stages", "x": list(range(1, len(finals) + 1)),
            "y": [rel(f["objective"], f["magnitude_objective"]) for f in finals],
            "floor": [rel(f.get("objective_lower_bound"), f["magnitude_objective"]) for f in finals],
            "sparsities": [float(f["sparsity"]) for f in finals],
            "iterations": sum(int(f.get("iterations", 0)) for f in finals),
            "stages": int(finals[-1].get("stages", len(finals)))}


class ObjectivePlot(StudioPlot):
    """The mask search on the local quadratic: CHITA's objective after each verified refresh, or
    each CHITA++ stage's final objective, relative to the magnitude mask's backsolve (%), with
    the floor no mask of the same size goes below."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Mask search on the quadratic", parent)
        self.setLabel("left", "objective vs magnitude mask", units="%")
        self.series: dict | None = None
        self.method = ""
        self.live: list[dict] | None = None  # the stage records of a CHITA++ run still going
        self.set_message("After a CHITA or CHITA++ run: how far its mask search took the objective")

    def set_result(self, result: object | None, method_label: str = "") -> None:
        """Show ``result``'s search (None clears the plot)."""
        self.series = objective_series(result) if result is not None else None
        self.method = method_label
        self.live = None
        if result is not None and self.series is None:
            self.set_message(f"{method_label or 'This method'} has no mask search to plot: its mask "
                             "is chosen in one step. Run CHITA or CHITA++ to see one.")
        elif result is None:
            self.set_message("After a CHITA or CHITA++ run: how far its mask search took the objective")
        self.redraw()

    def start_live(self, method_label: str) -> None:
        """A CHITA++ run starts: its stages are drawn as they finish (:meth:`add_stage`)."""
        self.live = []
        self.series = None
        self.method = method_label
        self.redraw()
        self.set_message(f"{method_label}: each stage's mask search appears here as it finishes")

    def add_stage(self, record: Mapping) -> None:
        """One more stage of the running CHITA++ (a ``prune(on_stage=)`` record)."""
        if self.live is None:
            self.live = []
        self.live.append(dict(record))
        self.series = stages_series(self.live)
        self.redraw()

    def redraw(self) -> None:
        p = self.theme.palette
        item = self.getPlotItem()
        item.clear()
        if item.legend is not None:
            item.legend.clear()
        s = self.series
        if not s:
            return
        self.set_message(None)
        legend = item.legend if item.legend is not None else item.addLegend(offset=(-8, 8))
        x = np.array(s["x"], dtype=float)
        y = np.array(s["y"], dtype=float)
        item.plot(x, y, pen=pg.mkPen(p.accent, width=2.5), symbol="o", symbolSize=7,
                  symbolBrush=pg.mkBrush(p.accent), symbolPen=pg.mkPen(self.theme.qcolor("panel")),
                  name=f"{self.method or 'CHITA'}: objective ({s['iterations']} swap steps)")
        lows = [v for v in (s["floor"] if s["kind"] == "stages" else [s["floor"]]) if v is not None]
        if s["kind"] == "trace":
            self.setLabel("bottom", "verified refresh of the mask search (0: the magnitude mask)")
            if s["floor"] is not None:
                floor_line = pg.InfiniteLine(
                    pos=s["floor"], angle=0, pen=pg.mkPen(p.pruned, width=1.5, style=Qt.PenStyle.DashLine),
                    label=f"floor {s['floor']:+.2f}%: no mask of this size goes lower",
                    labelOpts={"position": 0.97, "color": p.pruned, "anchors": [(1, 1), (1, 1)],
                               "fill": self.theme.qcolor("panel", 200)})
                item.addItem(floor_line)
                self.fit_text(floor_line.label, [f"floor {s['floor']:+.2f}%: no mask of this size goes lower",
                                                 f"floor {s['floor']:+.2f}%"])
            state = "converged" if s["converged"] else "stopped at its cap"
            self.set_title(f"Mask search at {100 * s['sparsity']:.0f}%: {y[-1]:+.2f}%, {state}")
            item.getAxis("bottom").setTicks([[(int(v), str(int(v))) for v in x]] if len(x) <= 15 else None)
        else:
            self.setLabel("bottom", "CHITA++ stage")
            floor = np.array([np.nan if v is None else v for v in s["floor"]], dtype=float)
            if np.isfinite(floor).any():
                item.plot(x, floor, pen=pg.mkPen(p.pruned, width=1.5, style=Qt.PenStyle.DashLine),
                          name="floor: no mask of that size goes lower")
            done = f"{len(x)} stages" if len(x) >= s["stages"] else f"stage {len(x)} of {s['stages']}"
            self.set_title(f"CHITA++: {done}, at {100 * s['sparsities'][-1]:.0f}% {y[-1]:+.2f}%")
            item.getAxis("bottom").setTicks(None)
        zero_line = pg.InfiniteLine(pos=0.0, angle=0, pen=pg.mkPen(p.muted, width=1),
                                    label="magnitude mask, re-solved",
                                    labelOpts={"position": 0.03, "color": p.muted, "anchors": [(0, 1), (0, 1)]})
        item.addItem(zero_line)
        self.fit_text(zero_line.label, ["magnitude mask, re-solved", "magnitude mask"])
        legend.setLabelTextColor(p.fg)
        legend.setBrush(pg.mkBrush(self.theme.qcolor("panel", 210)))
        top = max([0.0, *y.tolist()])
        bottom = min([*y.tolist(), *lows])
        # room above the curve for the zero line's label and the legend (two rows for CHITA++),
        # where the legend is shown (a small plot hides it)
        self.keep_room_above(bottom, top, lambda: self.text_line() + (
            legend.boundingRect().height() + 8 if legend.isVisible() else 0), below=0.08)
        last = float(s.get("stages", x.max())) if s["kind"] == "stages" else float(x.max())
        item.setXRange(float(x.min()) - 0.3, max(last, float(x.max())) + 0.3, padding=0)
