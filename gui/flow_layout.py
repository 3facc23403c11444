"""A layout that places its items left to right and wraps them onto new lines when the width runs
out, as words wrap in a paragraph: rows of controls that fit a narrow window (presentation
mode's large type on a 1280-pixel projector) without widening it. Qt has no such layout among
its widgets; this follows the usual recipe (``heightForWidth`` gives the wrapped height)."""

from __future__ import annotations

from PySide6.QtCore import QMargins, QPoint, QRect, QSize, Qt
from PySide6.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QLabel,
    QLayout,
    QLayoutItem,
    QStyle,
    QWidget,
)


class FlowLayout(QLayout):
    """Items in their size hints, left to right, wrapped to the layout's width; the items that
    expand horizontally (a line edit) share the room their line has left. Its minimum width is
    its widest item's; its height follows the width (``hasHeightForWidth``)."""

    def __init__(self, parent: QWidget | None = None, spacing: int = -1, right: bool = False) -> None:
        """``right``: each line flush right (a row of buttons under a table), else left."""
        super().__init__(parent)
        self._items: list[QLayoutItem] = []
        self._spacing = spacing
        self._right = right
        self.setContentsMargins(QMargins(0, 0, 0, 0))

    def addItem(self, item: QLayoutItem) -> None:  # noqa: N802 - Qt API
        self._items.append(item)

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int) -> QLayoutItem | None:  # noqa: N802 - Qt API
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int) -> QLayoutItem | None:  # noqa: N802 - Qt API
        return self._items.pop(index) if 0 <= index < len(self._items) else None

    def expandingDirections(self) -> Qt.Orientation:  # noqa: N802 - Qt API
        return Qt.Orientation(0)

    def hasHeightForWidth(self) -> bool:  # noqa: N802 - Qt API
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802 - Qt API
        return self._place(QRect(0, 0, width, 0), move=False)

    def setGeometry(self, rect: QRect) -> None:  # noqa: N802 - Qt API
        super().setGeometry(rect)
        self._place(rect, move=True)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        """Every item on one line."""
        visible = [i for i in self._items if not i.isEmpty()]
        m = self.contentsMargins()
        gap = self._gap(Qt.Orientation.Horizontal)
        width = sum(i.sizeHint().width() for i in visible) + gap * max(0, len(visible) - 1)
        height = max((i.sizeHint().height() for i in visible), default=0)
        return QSize(width + m.left() + m.right(), height + m.top() + m.bottom())

    def minimumSize(self) -> QSize:  # noqa: N802 - Qt API
        """The widest item (each on a line of its own at worst)."""
        size = QSize()
        for item in self._items:
            if not item.isEmpty():
                size = size.expandedTo(item.minimumSize())
        m = self.contentsMargins()
        return size + QSize(m.left() + m.right(), m.top() + m.bottom())

    def _gap(self, orientation: Qt.Orientation) -> int:
        """The spacing given, else the style's between widgets of a layout (6 px where the style
        gives none: Fusion answers −1, and the items would touch)."""
        if self._spacing >= 0:
            return self._spacing
        metric = (QStyle.PixelMetric.PM_LayoutHorizontalSpacing if orientation == Qt.Orientation.Horizontal
                  else QStyle.PixelMetric.PM_LayoutVerticalSpacing)
        value = QApplication.style().pixelMetric(metric)
        return value if value >= 0 else 6

    def _place(self, rect: QRect, move: bool) -> int:
        """Lay the items out in ``rect`` (only measure unless ``move``); returns the height used.
        Items of a line are centred on it vertically."""
        m = self.contentsMargins()
        area = rect.adjusted(m.left(), m.top(), -m.right(), -m.bottom())
        hgap, vgap = self._gap(Qt.Orientation.Horizontal), self._gap(Qt.Orientation.Vertical)
        lines: list[list[QLayoutItem]] = [[]]
        x = area.x()
        for item in self._items:
            if item.isEmpty():
                continue
            w = item.sizeHint().width()
            if lines[-1] and x + w > area.right() + 1:
                lines.append([])
                x = area.x()
            lines[-1].append(item)
            x += w + hgap
        y = area.y()
        for line in lines:
            if not line:
                continue
            height = max(i.sizeHint().height() for i in line)
            widths = [min(i.sizeHint().width(), area.width()) for i in line]
            spare = area.width() - sum(widths) - hgap * (len(line) - 1)
            grow = [k for k, i in enumerate(line) if i.expandingDirections() & Qt.Orientation.Horizontal]
            for n, k in enumerate(grow):  # expanding items (a line edit) share what the line has left
                widths[k] += max(0, spare) // len(grow) + (1 if n < max(0, spare) % len(grow) else 0)
            x = area.x()
            if self._right and not grow:
                x = max(area.x(), area.x() + spare)
            for item, w in zip(line, widths):
                hint = item.sizeHint()
                if move:
                    item.setGeometry(QRect(QPoint(x, y + (height - hint.height()) // 2), QSize(w, hint.height())))
                x += w + hgap
            y += height + vgap
        return max(0, y - vgap - area.y()) + m.top() + m.bottom()


def pair(label: str, field: QWidget, tip: str = "") -> QWidget:
    """A label and its field as one widget, so that a :class:`FlowLayout` wraps them together."""
    box = QWidget()
    row = QHBoxLayout(box)
    row.setContentsMargins(0, 0, 0, 0)
    text = QLabel(label)
    text.setBuddy(field)
    if tip:
        text.setToolTip(tip)
    row.addWidget(text)
    row.addWidget(field)
    return box

