"""The Classes tab's strip of images: the evaluation images a run lost (or gained) against the
dense model or magnitude, each drawn back from the model's inputs with its true class and what the
run now predicts (core.changed_images). A click on a class's bar shows that class's alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PySide6.QtCore import QEvent, QSize, Qt
from PySide6.QtGui import QAction, QIcon, QImage, QKeySequence, QPixmap
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from core.changed_images import (
    KINDS,
    SHEET_LIMIT,
    changed_images,
    contact_sheet_png,
    display_pixels,
    guesses_text,
    second_line,
    share_by_class,
    write_contact_sheet,
)
from core.data import class_name

LIMIT = SHEET_LIMIT  # images drawn at most, each class with its share; the header says how many there are
ICON = 44  # thumbnail size in pixels


def pixmap_of(pixels: np.ndarray, size: int = ICON) -> QPixmap:
    """An (H, W, 3) uint8 picture as a ``size`` pixmap: scaled up at least twofold, nearest
    neighbour (the digits' 8×8 pixels stay sharp squares); otherwise smoothly."""
    h, w = pixels.shape[:2]
    data = np.ascontiguousarray(pixels)
    image = QImage(data.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()  # own the bytes
    mode = (Qt.TransformationMode.FastTransformation if 2 * max(h, w) <= size
            else Qt.TransformationMode.SmoothTransformation)
    return QPixmap.fromImage(image.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, mode))


class ElidedLabel(QLabel):
    """A one-line label that ends in "…" where its text does not fit (the full text in its tooltip)."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.full = ""
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt API
        self.full = text
        self._elide()

    def text(self) -> str:
        """The whole text, not its shortened form."""
        return self.full

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        super().setText(self.fontMetrics().elidedText(self.full, Qt.TextElideMode.ElideRight,
                                                      max(0, self.width() - 2)))


class ChangedImagesView(QWidget):
    """A header (how many images, against what, which class), a Lost/Gained chooser, a button back
    to all classes, and the images as a wrapping grid of thumbnails captioned with the true class
    and "→ now" (lost) or "was before" (gained)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.header = ElidedLabel("")
        self.header.setObjectName("Muted")
        self.header.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.kind_box = QComboBox()
        self.kind_box.addItem("Lost", "lost")
        self.kind_box.addItem("Gained", "gained")
        self.kind_box.setToolTip("Lost: right for the reference, wrong for this run. Gained: the other way")
        self.kind_box.currentIndexChanged.connect(self.refresh)
        self.all_button = QToolButton()
        self.all_button.setText("All")
        self.all_button.setToolTip("Show the images of every class again (a click on a bar shows one class's)")
        self.all_button.clicked.connect(lambda: self.set_label(None))
        self.save_button = QToolButton()
        self.save_button.setText("Save…")
        self.save_button.setToolTip("Save these images as a PNG contact sheet, captioned (for slides and reports; "
                                    "Ctrl+C on the images copies it)")
        self.on_save: Callable[[], None] | None = None  # asks where, then calls save_to
        self.save_button.clicked.connect(lambda: self.on_save() if self.on_save is not None else None)
        self.grid = QListWidget()
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setMovement(QListView.Movement.Static)
        self.grid.setIconSize(QSize(ICON, ICON))
        self.grid.setWordWrap(True)
        self.grid.setTextElideMode(Qt.TextElideMode.ElideRight)
        self._fit_grid()
        self.grid.setUniformItemSizes(True)
        self.grid.setSelectionMode(QListWidget.SelectionMode.SingleSelection)
        self.grid.itemActivated.connect(self.open_item)  # double-click or Enter
        self.detail: ImageDetail | None = None  # the last image opened large
        copy = QAction("Copy these images (a captioned sheet)", self.grid)
        copy.setShortcut(QKeySequence.StandardKey.Copy)
        copy.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        copy.triggered.connect(self.copy_sheet)
        self.grid.addAction(copy)  # Ctrl+C on the images, and their right-click menu
        self.grid.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        row = QHBoxLayout()
        row.addWidget(self.header, 1)
        row.addWidget(self.all_button)
        row.addWidget(self.save_button)
        row.addWidget(self.kind_box)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(row)
        lay.addWidget(self.grid, 1)
        self.result: Any = None
        self.reference: Any = None
        self.images: Any = None
        self.normalization: Any = None
        self.against = "dense"
        self.label: int | None = None
        self.changed: tuple = ()
        self.title = ""  # the header's words, for the saved sheet
        self._drawn = False  # thumbnails drawn for the images listed
        self.refresh()

    def _fit_grid(self) -> None:
        """Cells for a thumbnail and two lines of caption in the current font."""
        line = self.grid.fontMetrics().height()
        self.grid.setGridSize(QSize(ICON + 50, ICON + 2 * line + 12))
        self.grid.setMinimumHeight(ICON + 2 * line + 16)

    def changeEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        """A new font or style sheet (presentation mode) resizes the cells."""
        super().changeEvent(event)
        if event.type() in (QEvent.Type.FontChange, QEvent.Type.StyleChange) and hasattr(self, "grid"):
            self._fit_grid()
            self.refresh()  # the items' sizes follow the cells

    @property
    def kind(self) -> str:
        """"lost" or "gained", as the chooser says."""
        return str(self.kind_box.currentData())

    def set_kind(self, kind: str) -> None:
        """Choose lost or gained images (as the chooser does)."""
        self.kind_box.setCurrentIndex(KINDS.index(kind))

    def set_data(self, result: Any, reference: Any, images: Any, normalization: Any = None,
                 against: str = "dense") -> None:
        """``result`` and ``reference`` (EvalResults on ``images``, an ImageSet) to compare; None
        clears. ``normalization`` turns the inputs back into pixels; ``against`` names the
        reference in the header. The class chosen before stays chosen if the data is the same."""
        if images is not self.images:
            self.label = None
        self.result, self.reference, self.images = result, reference, images
        self.normalization, self.against = normalization, against
        self.refresh()

    def set_label(self, label: int | None) -> None:
        """Show only class ``label``'s images (None: every class's)."""
        self.label = label
        self.refresh()

    def _names(self) -> Any:
        return getattr(self.images, "class_names", None)

    def refresh(self) -> None:
        """List the changed images again, and draw them now if the view is seen (else when it is)."""
        self.grid.clear()
        self.all_button.setVisible(self.label is not None)
        self.changed = ()
        self.save_button.setEnabled(False)
        if self.result is None or self.reference is None or self.images is None:
            self.header.setText("The images a run loses against the reference show here")
            return
        try:
            self.changed = changed_images(self.result, self.reference, self.images.y, kind=self.kind,
                                          label=self.label)
        except ValueError:
            self.header.setText("This run was saved without its predictions: run it again to see its images")
            return
        which = "" if self.label is None else f" of {self._label_text(self.label)}"
        verb = "lost" if self.kind == "lost" else "gained"
        count = len(self.changed)
        text = f"{count:,} image{'' if count == 1 else 's'}{which} {verb} against {self.against}"
        self.title = text
        if count > LIMIT:
            text += f" ({LIMIT} drawn, each class with its share)"
        self.header.setText(text)
        self.header.setToolTip(text + ". Each image shows its true class and, below, what this run now "
                               "predicts (lost: → frog) or what the reference said (gained: was frog). Click a class's bar above for its images alone; hover an image "
                               "for what the reference said.")
        self.save_button.setEnabled(bool(self.changed))
        self._drawn = False
        if self.isVisible():
            self._draw()

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        """Thumbnails are drawn when the tab is seen, not at every preview behind another tab."""
        super().showEvent(event)
        if not self._drawn:
            self._draw()

    def _draw(self) -> None:
        """The thumbnails of the images listed (at most ``LIMIT``, each class with its share)."""
        self._drawn = True
        shown = share_by_class(self.changed, LIMIT)
        if not shown:
            return
        pixels = display_pixels(self.images.x[torch.tensor([c.index for c in shown])], self.normalization,
                                max_size=2 * ICON)
        names = self._names()
        self.grid.setUpdatesEnabled(False)
        for c, pic in zip(shown, pixels):
            second = second_line(c, names)
            second = f"→ {second[3:]}" if second.startswith("as ") else second  # lost: "→ frog"
            item = QListWidgetItem(QIcon(pixmap_of(pic)), f"{class_name(c.label, names)}\n{second}")
            item.setToolTip(self._describe(c, names) + "\nDouble-click to see it large")
            item.setData(Qt.ItemDataRole.UserRole, c.index)
            item.setSizeHint(self.grid.gridSize() - QSize(4, 4))  # captions as wide as the cell
            self.grid.addItem(item)
        self.grid.setUpdatesEnabled(True)

    def _describe(self, c: Any, names: Any, html: bool = False) -> str:
        """What the tooltip (plain lines) and the large view (``html``) say of image ``c``: its
        class and each network's most probable classes (or just the predictions, where a run
        kept no probabilities)."""
        true, now = class_name(c.label, names), class_name(c.prediction, names)
        lines = [f"Evaluation image {c.index:,}: {true}",
                 f"This run: {guesses_text(self.result, c.index, names) or now}"]
        ref = guesses_text(self.reference, c.index, names)
        if ref or c.reference_prediction >= 0:
            lines.append(f"{self.against.capitalize()}: {ref or class_name(c.reference_prediction, names)}")
        if html:
            from html import escape

            return "<br>".join(escape(line) for line in lines)
        return "\n".join(lines)

    def open_item(self, item: QListWidgetItem) -> None:
        """Show the image behind ``item`` large, with what each network made of it."""
        index = item.data(Qt.ItemDataRole.UserRole)
        image = next((c for c in self.changed if c.index == index), None)
        if image is None:
            return
        pixels = display_pixels(self.images.x[index:index + 1], self.normalization, max_size=256)[0]
        if self.detail is not None:
            self.detail.close()
        self.detail = ImageDetail(self, pixels, self._describe(image, self._names(), html=True))
        self.detail.show()

    def file_name(self, model: str) -> str:
        """A name to offer for :meth:`save_to`: 'resnet20_lost_bird.png'."""
        import re

        which = "" if self.label is None else f"_{class_name(self.label, self._names())}"
        return re.sub(r"[^\w.-]+", "_", f"{Path(model).stem}_{self.kind}{which}") + ".png"

    def copy_sheet(self) -> int:
        """Put the images drawn now on the clipboard as one captioned picture (the sheet
        :meth:`save_to` writes), to paste into slides; returns how many it shows."""
        if not self.changed:
            return 0
        data, shown = contact_sheet_png(self.images, self.changed, normalization=self.normalization,
                                        title=self.title, limit=LIMIT)
        QApplication.clipboard().setImage(QImage.fromData(data, "PNG"))
        return shown

    def save_to(self, path: str) -> int:
        """Write the images drawn now (at most ``LIMIT``) as a captioned PNG contact sheet at
        ``path``, atomically (core.changed_images); returns how many it shows."""
        return write_contact_sheet(path, self.images, self.changed, normalization=self.normalization,
                                   title=self.title, limit=LIMIT)

    def _label_text(self, label: int) -> str:
        name = class_name(label, self._names())
        return f"class {name}" if name.isdigit() else name


class ImageDetail(QDialog):
    """One evaluation image large (at least 256 px a side, small images in sharp pixels), with
    its class and what the run and the reference made of it. Non-modal."""

    def __init__(self, parent: QWidget | None, pixels: np.ndarray, html: str) -> None:
        super().__init__(parent)
        self.setWindowTitle("Image")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        lay = QVBoxLayout(self)
        self.picture = QLabel()
        side = max(256, max(pixels.shape[:2]))
        self.picture.setPixmap(pixmap_of(pixels, side))
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.text = QLabel(html)
        self.text.setTextFormat(Qt.TextFormat.RichText)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        lay.addWidget(self.picture)
        lay.addWidget(self.text)
        lay.addWidget(buttons)
