"""Columns that fit: a table hides its least needed columns where the shown ones are wider than
its viewport, instead of scrolling sideways (the Runs table's eleven columns did below 1,600 px,
on a 1366×768 laptop too).

A :class:`ColumnFitter` watches one ``QTableWidget``. It shows every column that fits and, while
the shown ones are wider than the viewport, hides the optional ones in the order it was given
(an empty column before any other). A hidden column's cells are not lost: the row's tooltip
names them ("Not shown for want of room: λ 2.68e-08 · Seconds 0.4"). The header's context menu
shows or hides any column by hand; such a choice is kept (the table then scrolls sideways if it
must; :meth:`ColumnFitter.choices` for the settings) until *Fit the columns to the width* hands
the columns back to the fitter.
"""

from __future__ import annotations

from typing import Callable, Sequence

from PySide6.QtCore import QEvent, QObject, QPoint, Qt, QTimer
from PySide6.QtWidgets import QHeaderView, QMenu, QTableWidget, QToolTip


class ColumnFitter(QObject):
    """Fit ``table``'s columns to its width by hiding those of ``optional`` (least needed first),
    and where that is not enough, by narrowing column ``shrink`` (its texts end in "…") down to
    ``least`` px. ``names``: the columns' names for the remembered choices (default: the
    headers' texts, which may change)."""

    def __init__(self, table: QTableWidget, optional: Sequence[int], *, names: Sequence[str] | None = None,
                 shrink: int | None = None, least: int = 90) -> None:
        super().__init__(table)
        self.table = table
        self.optional = tuple(optional)
        self.names = tuple(names) if names is not None else tuple(self._name(c) for c in range(table.columnCount()))
        self.shrink = shrink
        self.least = least
        self.shrunk = False  # column ``shrink`` narrower than its texts
        self.by_hand: dict[int, bool] = {}  # column → shown, chosen on the header's menu
        self.hidden_for_room: tuple[int, ...] = ()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self.fit)
        table.viewport().installEventFilter(self)
        table.installEventFilter(self)
        header = table.horizontalHeader()
        header.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        header.customContextMenuRequested.connect(self._header_menu)
        header.setToolTip("Right-click to choose the columns")
        model = table.model()
        for sig in (model.dataChanged, model.rowsInserted, model.rowsRemoved, model.modelReset,
                    model.headerDataChanged):
            sig.connect(self.fit_later)

    def fit_later(self, *_args: object) -> None:
        """Fit once the current changes are done (many cells change at once)."""
        self._timer.start()

    def content_width(self, column: int) -> int:
        """What ``column`` needs: its widest cell or its header."""
        return max(self.table.sizeHintForColumn(column), self.table.horizontalHeader().sectionSizeHint(column))

    def _empty(self, column: int) -> bool:
        t = self.table
        return t.rowCount() > 0 and all((t.item(r, column) is None or not t.item(r, column).text())
                                        for r in range(t.rowCount()))

    def widths(self) -> list[int]:
        """Every column's contents' width (a hidden column's header measures 0: each is shown
        while it is measured; nothing is painted in between)."""
        t = self.table
        hidden = [c for c in range(t.columnCount()) if t.isColumnHidden(c)]
        for c in hidden:
            t.setColumnHidden(c, False)
        out = [self.content_width(c) for c in range(t.columnCount())]
        for c in hidden:
            t.setColumnHidden(c, True)
        return out

    def fit(self, width: int | None = None) -> int:
        """Show the columns that fit in ``width`` px (default: the viewport's) and hide the rest
        of the optional ones, empty ones first; returns the shown columns' width."""
        t = self.table
        width = t.viewport().width() if width is None else width
        columns = range(t.columnCount())
        sizes = self.widths()
        order = [c for c in self.optional if self._empty(c)] + [c for c in self.optional if not self._empty(c)]
        shown = [c for c in columns if self.by_hand.get(c, True)]
        hidden: list[int] = []
        for c in order:
            if sum(sizes[s] for s in shown) <= width:
                break
            if c in shown and c not in self.by_hand:
                shown.remove(c)
                hidden.append(c)
        self.hidden_for_room = tuple(hidden)
        names = ", ".join(self._name(c) for c in sorted(hidden))
        t.horizontalHeader().setToolTip((f"Not shown for want of room: {names} (a row's tooltip gives them). "
                                         if names else "") + "Right-click to choose the columns")
        for c in columns:
            if t.isColumnHidden(c) != (c not in shown):
                t.setColumnHidden(c, c not in shown)
        # a stretched last column never gets narrower than it once was (Qt keeps that width: a
        # bold row's text, since gone, scrolled the table): every column to its contents first
        header = t.horizontalHeader()
        stretch = header.stretchLastSection()
        header.setStretchLastSection(False)
        t.resizeColumnsToContents()
        header.setStretchLastSection(stretch)
        total = sum(sizes[s] for s in shown)
        if self.shrink is not None:
            narrower = min(sizes[self.shrink], max(self.least, sizes[self.shrink] - (total - width)))
            self.shrunk = self.shrink in shown and narrower < sizes[self.shrink]
            if self.shrunk:
                header.setSectionResizeMode(self.shrink, QHeaderView.ResizeMode.Interactive)
                header.resizeSection(self.shrink, narrower)
                total -= sizes[self.shrink] - narrower
            else:
                header.setSectionResizeMode(self.shrink, QHeaderView.ResizeMode.ResizeToContents)
        return total

    def _name(self, column: int) -> str:
        head = self.table.horizontalHeaderItem(column)
        return head.text() if head is not None else str(column)

    def hidden_text(self, row: int) -> str:
        """The cells of ``row`` in columns hidden for want of room (and the narrowed column's
        whole text), as one line ("" if none)."""
        parts = []
        for c in sorted(self.hidden_for_room + ((self.shrink,) if self.shrunk else ())):
            item = self.table.item(row, c)
            text = item.text() if item is not None else ""
            if text:
                parts.append(f"{self._name(c)}: {text}")
        return " · ".join(parts)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt API
        """Refit on resizes; a row's tooltip adds the cells hidden for room."""
        if event.type() == QEvent.Type.Resize and watched is self.table:
            self.fit_later()
        elif (event.type() == QEvent.Type.ToolTip and watched is self.table.viewport()
              and (self.hidden_for_room or self.shrunk)):
            pos = event.pos()
            index = self.table.indexAt(pos)
            if index.isValid():
                own = self.table.item(index.row(), index.column())
                own_tip = own.toolTip() if own is not None else ""
                extra = self.hidden_text(index.row())
                if extra:
                    text = (own_tip + "\n\n" if own_tip else "") + f"Not shown for want of room: {extra}"
                    QToolTip.showText(event.globalPos(), text, self.table.viewport())
                    return True
        return super().eventFilter(watched, event)

    def menu_actions(self) -> list[tuple[str, bool | None, Callable[[], None]]]:
        """The header's context menu: (text, checked or None, what it does)."""
        t = self.table
        out: list[tuple[str, bool | None, Callable[[], None]]] = []
        for c in sorted(self.optional):  # the others are always shown
            out.append((self._name(c), not t.isColumnHidden(c), lambda c=c: self.set_shown(c, t.isColumnHidden(c))))
        out.append(("Fit the columns to the width", None, self.reset))
        return out

    def set_shown(self, column: int, shown: bool) -> None:
        """Show or hide ``column`` by hand (the fitter then leaves it so)."""
        self.by_hand[column] = shown
        self.fit()

    def choices(self) -> list[str]:
        """The columns shown or hidden by hand, as "name=1" / "name=0" (for QSettings)."""
        return [f"{self.names[c]}={int(shown)}" for c, shown in sorted(self.by_hand.items())]

    def restore_choices(self, items: Sequence[str]) -> None:
        """Take back :meth:`choices`; unknown names (another version's columns) are ignored."""
        self.by_hand.clear()
        for item in items or ():
            name, _, value = str(item).rpartition("=")
            if name in self.names and self.names.index(name) in self.optional and value in ("0", "1"):
                self.by_hand[self.names.index(name)] = value == "1"
        self.fit()

    def reset(self) -> None:
        """Hand every column back to the fitter."""
        self.by_hand.clear()
        self.fit()

    def _header_menu(self, pos: QPoint) -> None:
        menu = QMenu(self.table)
        for text, checked, do in self.menu_actions():
            if checked is None:
                menu.addSeparator()
            action = menu.addAction(text)
            if checked is not None:
                action.setCheckable(True)
                action.setChecked(checked)
            action.triggered.connect(lambda _=False, d=do: d())
        menu.exec(self.table.horizontalHeader().mapToGlobal(pos))

