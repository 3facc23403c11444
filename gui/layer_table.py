"""The layer table: name, type, shape, parameters, share, sparsity now and after pruning."""

from __future__ import annotations

from typing import Any, Mapping

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QRectF,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QMenu,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableView,
    QWidget,
)

from gui.jobs import LayerRow

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
FRACTION_ROLE = Qt.ItemDataRole.UserRole + 2
KEY_ROLE = Qt.ItemDataRole.UserRole + 3

COLUMNS = ("#", "Layer", "Type", "Shape", "Params", "Share", "Sparsity", "After")
COL_INDEX, COL_NAME, COL_TYPE, COL_SHAPE, COL_PARAMS, COL_SHARE, COL_NOW, COL_AFTER = range(len(COLUMNS))
BAR_COLUMNS = (COL_SHARE, COL_NOW, COL_AFTER)
# Columns hidden, in this order, when the table is too narrow for every column (the line above
# the plots gives the chosen layer's type, shape and size); hidden always in compact mode. Before
# them goes Sparsity-now where the model is dense (LayerTable.fit_columns).
OPTIONAL_COLUMNS = (COL_TYPE, COL_PARAMS, COL_SHAPE)
MIN_NAME_WIDTH = 90  # px: the layer names' column is shortened ("…1.0.conv1") down to this

Index = QModelIndex | QPersistentModelIndex


def fmt_int(n: int) -> str:
    """12345 → '12,345'."""
    return f"{n:,}"


def fmt_pct(x: float | None, digits: int = 1) -> str:
    """0.123 → '12.3%'; None → '–'. A fraction that would round to 0 or 100 without being
    it says so: 0.0004 → '<0.1%' (a small layer's share of ResNet-50), 0.9997 → '>99.9%'."""
    if x is None:
        return "–"
    half = 0.5 * 10.0 ** -(digits + 2)  # half a unit of the last digit shown, as a fraction
    if 0.0 < x < half:
        return f"<{100.0 * 2 * half:.{digits}f}%"
    if 1.0 - half <= x < 1.0:
        return f">{100.0 * (1.0 - 2 * half):.{digits}f}%"
    return f"{100.0 * x:.{digits}f}%"


class LayerTableModel(QAbstractTableModel):
    """Rows from :class:`gui.jobs.LayerRow`; the 'after' column is set by previews and runs."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._rows: list[LayerRow] = []
        self._after: dict[str, float] = {}
        self._kept_dense: set[str] = set()  # weights the shown run or preview left dense
        self._number: list[int | None] = []
        self.after_label = "After"
        self.after_method = ""
        self.short_after = False  # the header says "After" only (presentation mode; its tooltip names the method)
        self.short_names = False  # names without ".weight" (a narrow table; the tooltip has the whole key)
        self.muted = QColor("#8a93a3")

    # -- data ---------------------------------------------------------------------------------
    def set_rows(self, rows: list[LayerRow] | tuple[LayerRow, ...]) -> None:
        """Replace all rows (a new model was loaded)."""
        self.beginResetModel()
        self._rows = list(rows)
        self._after = {}
        self._kept_dense = set()
        ordinal = 0
        self._number: list[int | None] = []
        for r in self._rows:
            if r.prunable:
                ordinal += 1
            self._number.append(ordinal if r.prunable else None)
        self.endResetModel()

    def set_after(self, sparsity: Mapping[str, float] | None, label: str | None = None,
                  kept_dense: tuple[str, ...] | list[str] = ()) -> None:
        """Fill the 'sparsity after' column from a PruneResult.layer_sparsity mapping; the weights
        in ``kept_dense`` (prunable weights the shown result left whole) say "dense" there."""
        self._after = dict(sparsity or {})
        self._kept_dense = set(kept_dense)
        if label is not None:
            self.after_method = label
            short = label.split(" (")[0]  # "Magnitude (global)" → "Magnitude": the tooltip has it whole
            self.after_label = f"After ({short})" if sparsity and label else "After"
            self.headerDataChanged.emit(Qt.Orientation.Horizontal, COL_AFTER, COL_AFTER)
        if self._rows:
            self.dataChanged.emit(self.index(0, COL_AFTER), self.index(len(self._rows) - 1, COL_AFTER))

    def set_short_after(self, on: bool) -> None:
        """Head the *After* column "After" alone (the method stays in its tooltip)."""
        if self.short_after != bool(on):
            self.short_after = bool(on)
            self.headerDataChanged.emit(Qt.Orientation.Horizontal, COL_AFTER, COL_AFTER)

    def set_short_names(self, on: bool) -> None:
        """Show the names without their ".weight" (the column's width then follows)."""
        if self.short_names != bool(on):
            self.short_names = bool(on)
            if self._rows:
                self.dataChanged.emit(self.index(0, COL_NAME), self.index(len(self._rows) - 1, COL_NAME))

    def after(self, key: str) -> float | None:
        """The 'after' sparsity of a weight, if a preview or run covered it."""
        return self._after.get(key)

    def row(self, i: int) -> LayerRow:
        """The LayerRow at source row ``i``."""
        return self._rows[i]

    def rows(self) -> list[LayerRow]:
        """All rows in model order."""
        return list(self._rows)

    def row_of_key(self, key: str) -> int:
        """Source row of a weight key, or -1."""
        for i, r in enumerate(self._rows):
            if r.key == key:
                return i
        return -1

    # -- Qt model API ---------------------------------------------------------------------------
    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            if section == COL_AFTER:
                return "After" if self.short_after else self.after_label
            return COLUMNS[section]
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.ToolTipRole:
            return {
                COL_SHARE: "Share of all parameters of the model",
                COL_NOW: "Sparsity now: fraction of zero weights in the loaded model",
                COL_AFTER: f"Sparsity after pruning ({self.after_method or 'preview or last run'})",
            }.get(section)
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        r = self._rows[index.row()]
        c = index.column()
        after = self._after.get(r.key)
        if role == Qt.ItemDataRole.DisplayRole:
            return {
                COL_INDEX: "" if self._number[index.row()] is None else str(self._number[index.row()]),
                COL_NAME: r.name[:-7] if self.short_names and r.name.endswith(".weight") else r.name,
                COL_TYPE: r.type,
                COL_SHAPE: "×".join(str(s) for s in r.shape),
                COL_PARAMS: fmt_int(r.params),
                COL_SHARE: fmt_pct(r.share),
                COL_NOW: fmt_pct(r.sparsity_now) if r.prunable or r.sparsity_now else "–",
                COL_AFTER: (fmt_pct(after) if after is not None else "dense" if r.key in self._kept_dense
                            else ("–" if not r.prunable else "")),
            }[c]
        if role == SORT_ROLE:
            return {
                COL_INDEX: index.row(), COL_NAME: r.name, COL_TYPE: r.type, COL_SHAPE: r.params,
                COL_PARAMS: r.params, COL_SHARE: r.share, COL_NOW: r.sparsity_now,
                COL_AFTER: (0.0 if r.key in self._kept_dense else -1.0) if after is None else after,
            }[c]
        if role == FRACTION_ROLE:
            return {COL_SHARE: r.share, COL_NOW: r.sparsity_now if r.prunable else None, COL_AFTER: after}.get(c)
        if role == KEY_ROLE:
            return r.key
        if role == Qt.ItemDataRole.TextAlignmentRole:
            if c in (COL_INDEX, COL_PARAMS, COL_SHARE, COL_NOW, COL_AFTER):
                return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            return int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole and not r.prunable:
            return self.muted
        if role == Qt.ItemDataRole.ToolTipRole:
            state = "prunable" if r.prunable else "not pruned (kept dense)"
            return f"{r.key}: {r.type}, {fmt_int(r.params)} parameters, {state}"
        return None


class BarDelegate(QStyledItemDelegate):
    """Draws a thin proportional bar under percentage cells."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.color = QColor("#2f6fde")

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        frac = index.data(FRACTION_ROLE)
        if isinstance(frac, float) and frac > 0:
            rect = option.rect.adjusted(4, option.rect.height() - 6, -4, -2)
            painter.save()
            bar = QColor(self.color)
            bar.setAlpha(150)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(bar)
            painter.drawRoundedRect(QRectF(rect.x(), rect.y(), rect.width() * min(1.0, frac), rect.height()), 2, 2)
            painter.restore()
        super().paint(painter, option, index)


class LayerTable(QTableView):
    """Sortable view of the layers; emits ``layer_selected(key)`` when a row is chosen."""

    layer_selected = Signal(str)
    keep_dense_toggled = Signal(str)  # a prunable weight's "Keep this layer dense" (context menu)
    prune_all_requested = Signal()  # "Prune every layer again" (context menu)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.source = LayerTableModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.source)
        self.proxy.setSortRole(SORT_ROLE)
        self.proxy.setFilterKeyColumn(COL_NAME)
        self.proxy.setFilterRole(SORT_ROLE)  # the whole name, also where the column shows it short
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.setModel(self.proxy)
        self.setSortingEnabled(True)
        self.sortByColumn(COL_INDEX, Qt.SortOrder.AscendingOrder)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setAlternatingRowColors(True)
        self.setShowGrid(False)
        self.setWordWrap(False)
        self.setTextElideMode(Qt.TextElideMode.ElideLeft)  # a shortened name keeps its end ("…1.0.conv1")
        self.verticalHeader().setVisible(False)
        header = self.horizontalHeader()
        header.setHighlightSections(False)
        header.setStretchLastSection(False)
        # widths are set by fit_columns from contents measured once per change of the data
        # (ResizeToContents measured every cell again at each resize: 160 ms a resize with
        # ResNet50's 54 rows, benchmarks/layer_table_fit.py)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        header.setMinimumSectionSize(40)
        self.delegate = BarDelegate(self)
        for col in BAR_COLUMNS:
            self.setItemDelegateForColumn(col, self.delegate)
        self.selectionModel().currentRowChanged.connect(self._on_current)
        self.kept: set[str] = set()  # weights the user keeps dense (the window's choice, shown here)
        self.compact = False  # presentation mode: the optional columns stay hidden
        self.names_shortened = False  # fit_columns narrowed the names' column below its contents
        self.repeating = False  # the row changes for a key the user holds down (auto-repeat)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._context_menu)
        # content widths by (column, short form, fonts), kept until the data change
        self._widths: dict[tuple[int, bool, str, str], int] = {}
        self._fitting = False  # fit_columns' own switches of the names' and header's forms
        self._refit = QTimer(self)
        self._refit.setSingleShot(True)
        self._refit.timeout.connect(self._fit_after_change)
        for sig in (self.proxy.modelReset, self.proxy.layoutChanged, self.proxy.rowsInserted,
                    self.proxy.rowsRemoved):
            sig.connect(lambda *_: self._forget_widths())
        self.proxy.dataChanged.connect(
            lambda tl, br, *_: self._forget_widths(range(tl.column(), br.column() + 1)))
        self.proxy.headerDataChanged.connect(
            lambda orientation, first, last: self._forget_widths(range(first, last + 1))
            if orientation == Qt.Orientation.Horizontal else None)

    def context_actions(self, key: str | None) -> list[tuple[str, bool | None, object]]:
        """The context menu of a row (weight ``key``): (text, checked or None, what it emits)."""
        actions: list[tuple[str, bool | None, object]] = []
        row = self.source.row_of_key(key) if key else -1
        if row >= 0 and self.source.row(row).prunable:
            actions.append(("Keep this layer dense", key in self.kept, lambda: self.keep_dense_toggled.emit(key)))
        if self.kept:
            actions.append(("Prune every layer again", None, self.prune_all_requested.emit))
        return actions

    def _context_menu(self, pos) -> None:
        index = self.indexAt(pos)
        actions = self.context_actions(index.data(KEY_ROLE) if index.isValid() else None)
        if not actions:
            return
        menu = QMenu(self)
        for text, checked, emit in actions:
            action = menu.addAction(text)
            if checked is not None:
                action.setCheckable(True)
                action.setChecked(checked)
            action.triggered.connect(lambda _=False, e=emit: e())
        menu.exec(self.viewport().mapToGlobal(pos))

    def _forget_widths(self, columns=None) -> None:
        """The data of ``columns`` (all if None) changed: measure them again, and refit soon
        (not for fit_columns' own switches of form, whose widths are kept per form)."""
        if self._fitting:
            return
        if columns is None:
            self._widths.clear()
        else:
            cols = set(columns)
            for key in [k for k in self._widths if k[0] in cols]:
                del self._widths[key]
        self._refit.start(0)

    def _fit_after_change(self) -> None:
        if self.source.rowCount():
            self.fit_columns()

    def content_width(self, col: int, short: bool | None = None) -> int:
        """The width column ``col`` needs for its header and every shown row, as Qt's
        ResizeToContents gives it; measured once per change of the data or fonts. ``short``
        (the names' column: without ".weight"; *After*: its header without the method) asks for
        that form instead of the current one."""
        source = self.source
        now = (source.short_names if col == COL_NAME else source.short_after if col == COL_AFTER else False)
        short = now if short is None or col not in (COL_NAME, COL_AFTER) else short
        key = (col, short, self.font().key(), self.horizontalHeader().font().key())
        width = self._widths.get(key)
        if width is None:
            switch = source.set_short_names if col == COL_NAME else source.set_short_after
            self._fitting = True  # a switch of form changes no data
            try:
                if short != now:
                    switch(short)
                header = self.horizontalHeader()
                width = max(self.sizeHintForColumn(col), header.sectionSizeHint(col), header.minimumSectionSize())
                if short != now:
                    switch(now)
            finally:
                self._fitting = False
            self._widths[key] = width
        return width

    def fit_columns(self, width: int | None = None) -> int:
        """Show every column that fits in ``width`` px (default: the viewport's), hiding, while
        the columns are wider, the Sparsity-now column where every layer is dense now (a column
        of 0.0%), then Type, then Params, then Shape (so that *After* stays in view), and where
        that is not enough, leaves ".weight" off the layer names, then the method off the *After*
        header (its tooltip names it), then shortens the names from the left ("…1.0.conv1"), down
        to ``MIN_NAME_WIDTH`` (a 1024-pixel screen, presentation mode on a 1280-pixel one);
        returns the shown columns' total width. In compact mode (presentation) those four
        columns stay hidden (Sparsity-now only where the model is dense) and the header short.

        Widths are arithmetic on :meth:`content_width`: a resize measures no cell."""
        rows = self.source.rows()  # a copy: taken once (this runs on every resize)
        dense_now = bool(rows) and all(not r.sparsity_now for r in rows)
        optional = ((COL_NOW,) if dense_now else ()) + OPTIONAL_COLUMNS
        hidden = (set(OPTIONAL_COLUMNS) | ({COL_NOW} if dense_now else set())) if self.compact else set()
        width = self.viewport().width() if width is None else width
        short_names, short_after = False, self.compact
        need = {c: self.content_width(c) for c in range(len(COLUMNS)) if c not in (COL_NAME, COL_AFTER)}
        need[COL_NAME] = self.content_width(COL_NAME, short_names)
        need[COL_AFTER] = self.content_width(COL_AFTER, short_after)

        def total() -> int:
            return sum(w for c, w in need.items() if c not in hidden)

        for col in optional:
            if total() <= width:
                break
            hidden.add(col)
        if total() > width:  # "layer1.0.conv1" for "layer1.0.conv1.weight"
            short_names = True
            need[COL_NAME] = self.content_width(COL_NAME, True)
        if total() > width and not self.compact:  # "After" for "After (CHITA)"
            short_after = True
            need[COL_AFTER] = self.content_width(COL_AFTER, True)
        excess = total() - width
        self.names_shortened = excess > 0 and need[COL_NAME] > MIN_NAME_WIDTH
        if self.names_shortened:
            need[COL_NAME] = max(MIN_NAME_WIDTH, need[COL_NAME] - excess)
        header = self.horizontalHeader()
        self._fitting = True
        try:
            self.source.set_short_names(short_names)
            self.source.set_short_after(short_after)
            mode = (QHeaderView.ResizeMode.Interactive if self.names_shortened  # the user may widen it
                    else QHeaderView.ResizeMode.Fixed)
            if header.sectionResizeMode(COL_NAME) != mode:
                header.setSectionResizeMode(COL_NAME, mode)
            for col in range(len(COLUMNS)):
                if self.isColumnHidden(col) != (col in hidden):
                    self.setColumnHidden(col, col in hidden)
                if col not in hidden and header.sectionSize(col) != need[col]:
                    header.resizeSection(col, need[col])
        finally:
            self._fitting = False
        return header.length()

    def hides_for_room(self) -> bool:
        """Whether :meth:`fit_columns` hid a column (not by compact mode) or shortened the names
        for want of room."""
        return self.names_shortened or (not self.compact and (self.source.short_after or any(
            self.isColumnHidden(c) for c in (COL_NOW, *OPTIONAL_COLUMNS))))

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt's name
        """Arrow keys move the row as usual; :attr:`repeating` tells ``layer_selected``'s
        receivers that the key is held down (they may draw the last row only)."""
        self.repeating = event.isAutoRepeat()
        try:
            super().keyPressEvent(event)
        finally:
            self.repeating = False

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        """Columns come back as the table widens (a window or splitter resize) and go as it narrows."""
        super().resizeEvent(event)
        if self.model() is not None and self.source.rowCount():
            self.fit_columns()

    def set_bar_color(self, color: str) -> None:
        """Colour of the percentage bars (follows the theme)."""
        self.delegate.color = QColor(color)
        self.viewport().update()

    def set_rows(self, rows: list[LayerRow] | tuple[LayerRow, ...]) -> None:
        """Show a new model's layers and choose the first prunable one."""
        self.source.set_rows(rows)
        first = next((i for i, r in enumerate(rows) if r.prunable), 0 if rows else -1)
        if first >= 0:
            self.select_key(rows[first].key)

    def select_key(self, key: str) -> None:
        """Select the row of a weight key."""
        row = self.source.row_of_key(key)
        if row < 0:
            return
        index = self.proxy.mapFromSource(self.source.index(row, COL_NAME))
        if index.isValid():
            self.setCurrentIndex(index)
            self.scrollTo(index)

    def current_key(self) -> str | None:
        """Weight key of the selected row."""
        index = self.currentIndex()
        return index.data(KEY_ROLE) if index.isValid() else None

    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid():
            self.layer_selected.emit(current.data(KEY_ROLE))
