"""Dialogs: errors, questions, results. Hooks let tests and headless runs answer without blocking.

Set :data:`ERROR_HOOK` to a callable ``(title, text, details)`` to capture errors instead of
showing a modal box, and :data:`INFO_HOOK` ``(title, text)`` for information and result dialogs
(tests, ``--screenshot``, benchmarks). Questions go through
:func:`ask_yes_no` and :func:`ask_item`, which tests monkeypatch.
"""

from __future__ import annotations

import sys
import traceback
from types import TracebackType
from typing import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QDialogButtonBox,
    QFrame,
    QInputDialog,
    QLabel,
    QMessageBox,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from core.errors import Cancelled, StudioError

ErrorHook = Callable[[str, str, str], None]
InfoHook = Callable[[str, str], None]
ERROR_HOOK: ErrorHook | None = None
INFO_HOOK: InfoHook | None = None


def describe_exception(exc: BaseException) -> tuple[str, str]:
    """A (message, details) pair: StudioError messages as is, others with their type and traceback."""
    if isinstance(exc, StudioError):
        return str(exc), ""
    details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    text = (
        f"Something unexpected went wrong: {type(exc).__name__}: {exc}\n\n"
        "The window keeps running and nothing was changed. If this repeats, please report it "
        "with the details below."
    )
    return text, details


def show_error(parent: QWidget | None, title: str, text: str, details: str = "") -> None:
    """Show an error message (modal), or hand it to :data:`ERROR_HOOK` when one is set."""
    if ERROR_HOOK is not None:
        ERROR_HOOK(title, text, details)
        return
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Critical)
    box.setWindowTitle(title)
    box.setText(text)
    box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    if details:
        box.setDetailedText(details)
    box.exec()


def show_exception(parent: QWidget | None, exc: BaseException, title: str = "CHITA Studio") -> None:
    """Show any exception as an error dialog (``Cancelled`` is silent)."""
    if isinstance(exc, Cancelled):
        return
    text, details = describe_exception(exc)
    show_error(parent, title, text, details)


def show_info(parent: QWidget | None, title: str, text: str) -> None:
    """A modal information message (or :data:`INFO_HOOK`)."""
    if INFO_HOOK is not None:
        INFO_HOOK(title, text)
        return
    QMessageBox.information(parent, title, text)


def show_result(parent: QWidget | None, title: str, html: str) -> "InfoDialog | None":
    """A non-modal result dialog with rich text (or :data:`INFO_HOOK`); returns the dialog."""
    if INFO_HOOK is not None:
        INFO_HOOK(title, html)
        return None
    dialog = InfoDialog(parent, title, html)
    dialog.show()
    return dialog


def ask_yes_no(parent: QWidget | None, title: str, text: str, *, warning: bool = False) -> bool:
    """Ask a yes/no question; the default button is No."""
    icon = QMessageBox.Icon.Warning if warning else QMessageBox.Icon.Question
    box = QMessageBox(icon, title, text, QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, parent)
    box.setDefaultButton(QMessageBox.StandardButton.No)
    return box.exec() == QMessageBox.StandardButton.Yes


def ask_item(parent: QWidget | None, title: str, label: str, items: list[str], current: str | None = None) -> str | None:
    """Ask for one of ``items`` (the combo is editable, so a ``module:Class`` can be typed)."""
    index = items.index(current) if current in items else 0
    text, ok = QInputDialog.getItem(parent, title, label, items, index, True)
    text = text.strip()
    return text if ok and text else None


class InfoDialog(QDialog):
    """A non-modal result dialog with selectable rich text.

    Its width follows the font (460 px, or 62 average characters where that is wider:
    presentation mode's type), and the text scrolls where the screen is too short for it: Qt caps a
    new window at two thirds of the screen, which cut an export's report off at its bottom in
    presentation mode on a 1280×720 projector."""

    def __init__(self, parent: QWidget | None, title: str, html: str) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        layout = QVBoxLayout(self)
        self.label = QLabel(html)
        self.label.setTextFormat(Qt.TextFormat.RichText)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.label.setWordWrap(True)
        self.label.setMinimumWidth(max(460, 62 * self.label.fontMetrics().averageCharWidth()))
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll.setWidget(self.label)
        layout.addWidget(self.scroll)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok)
        buttons.accepted.connect(self.accept)
        layout.addWidget(buttons)
        self._fit_screen()

    def _fit_screen(self) -> None:
        """As tall as the text, up to 90% of the screen's height (then the text scrolls)."""
        screen = (self.parentWidget() or self).screen()
        avail = screen.availableGeometry().height() if screen is not None else 800
        bar = self.scroll.verticalScrollBar().sizeHint().width()
        width = self.label.minimumWidth() + bar + 2 * self.layout().contentsMargins().left()
        text = self.label.heightForWidth(self.label.minimumWidth())
        chrome = self.sizeHint().height() - self.scroll.sizeHint().height()
        self.resize(width, min(int(0.9 * avail), max(text, 0) + chrome + 4))


def install_excepthook(parent_getter: Callable[[], QWidget | None]) -> None:
    """Route exceptions raised in Qt slots to an error dialog instead of killing the app."""
    previous = sys.excepthook

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            previous(exc_type, exc, tb)
            return
        traceback.print_exception(exc_type, exc, tb)
        if QApplication.instance() is None:
            return
        try:
            exc.__traceback__ = tb
            show_exception(parent_getter(), exc)
        except Exception:  # never let the hook itself raise
            traceback.print_exc()

    sys.excepthook = hook
