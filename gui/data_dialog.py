"""Choose the data: built-in digits, a download, or a file/folder the core reads, plus a preset."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from core.data import PRESETS

SOURCES = (
    ("digits", "Built-in digits (scikit-learn, offline)"),
    ("path", "File or folder…"),
    ("mnist", "MNIST (cached or downloaded)"),
    ("cifar10", "CIFAR-10 (cached or downloaded)"),
)


class DataDialog(QDialog):
    """Returns ``(source, preset, class names)`` via :meth:`choice` after ``exec()``."""

    def __init__(self, parent: QWidget | None = None, source: str = "digits", preset: str | None = None,
                 class_names: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("Choose data")
        self.kind = QComboBox()
        for key, label in SOURCES:
            self.kind.addItem(label, key)
        self.path = QLineEdit()
        self.path.setPlaceholderText("folder with train/test data, an .npz, IDX file or ImageFolder")
        browse_file = QPushButton("File…")
        browse_dir = QPushButton("Folder…")
        browse_file.clicked.connect(self._browse_file)
        browse_dir.clicked.connect(self._browse_dir)
        path_row = QHBoxLayout()
        path_row.addWidget(self.path, 1)
        path_row.addWidget(browse_file)
        path_row.addWidget(browse_dir)
        self.preset = QComboBox()
        self.preset.addItem("Automatic (from the model or the image size)", None)
        for name, norm in PRESETS.items():
            shape = "×".join(str(s) for s in (norm.input_shape or ()))
            self.preset.addItem(f"{name}  —  {shape}, mean {norm.mean[0]:.3g}, std {norm.std[0]:.3g}", name)
        self.names = QLineEdit(class_names)
        self.names.setPlaceholderText("optional: airplane,automobile,… or a text file with one name per line")
        self.names.setToolTip("Names for the labels 0, 1, 2, … in order, for data that does not name its "
                              "classes (an .npz without class_names); the Classes tab and the reports show them. "
                              "Remembered for this source.")
        help_text = QLabel(
            "Calibration images (gradients, λ, BatchNorm) come from the training split and accuracy "
            "from the test split; they never overlap. A single file is split 70/30."
        )
        help_text.setObjectName("Muted")
        help_text.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Source", self.kind)
        form.addRow("Path", path_row)
        form.addRow("Normalisation", self.preset)
        form.addRow("Class names", self.names)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(help_text)
        layout.addWidget(buttons)
        self.setMinimumWidth(620)
        keys = [k for k, _ in SOURCES]
        if source in keys:
            self.kind.setCurrentIndex(keys.index(source))
        else:
            self.kind.setCurrentIndex(keys.index("path"))
            self.path.setText(source)
        i = self.preset.findData(preset)
        self.preset.setCurrentIndex(max(0, i))
        self.kind.currentIndexChanged.connect(self._sync)
        self._sync()

    def _sync(self) -> None:
        self.path.setEnabled(self.kind.currentData() == "path")

    def _browse_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Data file", self.path.text(),
                                              "Data (*.npz *.gz *ubyte*);;All files (*)")
        if path:
            self.path.setText(path)
            self.kind.setCurrentIndex([k for k, _ in SOURCES].index("path"))

    def _browse_dir(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Data folder", self.path.text())
        if path:
            self.path.setText(path)
            self.kind.setCurrentIndex([k for k, _ in SOURCES].index("path"))

    def choice(self) -> tuple[str, str | None, str]:
        """(source for core.data.load_bundle, preset name or None, class names as typed)."""
        kind = self.kind.currentData()
        source = self.path.text().strip() if kind == "path" else kind
        return source, self.preset.currentData(), self.names.text().strip()
