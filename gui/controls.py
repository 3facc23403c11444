"""The pruning controls: method, sparsity (slider + spin box), scope, samples and images per row, λ,
CHITA++ stages, refinement and BatchNorm recalibration."""

from __future__ import annotations

import html
from typing import Callable

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QDoubleValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from core.augment import BN_AUGMENTS
from core.errors import StudioError
from core.pruning import (
    MAX_IMAGES_PER_ROW,
    MAX_REFINE_STEPS,
    METHOD_LABELS,
    METHODS,
    UPDATE_SCALE_METHODS,
    PruneRequest,
)
from core.sparsity_pattern import parse_pattern
from gui import settings as st

SCOPES = (("global", "Global (one budget)"), ("layer", "Per layer (same sparsity)"))
PREVIEW_DEBOUNCE_MS = 150
BN_AUGMENT_LABELS = {"auto": "Automatic", "none": "As they are", "crop_flip": "Cropped and mirrored"}
BN_IMAGES_TIP = ("Calibration images BatchNorm's statistics are computed on. Automatic: the refresh "
                 "check before pruning tries both and keeps the lower held-out loss (ResNet20, trained "
                 "on cropped and mirrored images, gets those). The run's caption says which was used.")
UPDATE_CHOICES = ((1.0, "Whole (as in the paper)"), (None, "Auto (held-out error)"))
# N:M semi-structured patterns (core.sparsity_pattern): value, label
PATTERNS = (("", "None (any weights)"), ("2:4", "2:4 (sparse tensor cores)"), ("1:4", "1:4"), ("4:8", "4:8"))
PATTERN_TIP = ("Keep at most N of every M consecutive weights along each layer's inputs. 2:4 is what "
               "sparse tensor cores (NVIDIA Ampere and later, TensorRT) run at up to twice the speed. "
               "The pattern fixes the sparsity; layers whose input count is not a multiple of M stay dense.")
UPDATE_TIP = ("CHITA, WoodFisher and each CHITA++ stage: how far the kept weights move along the method's "
              "update. Whole: all of it. Auto: a fraction α chosen on held-out calibration error where "
              "BatchNorm is not recalibrated after it (ResNet20 without recalibration, 80% sparsity: "
              "CHITA +3, WoodFisher +7 points; at 90% CHITA -0.4; CHITA++ at 90% +1.4).")
# methods whose run holds G (samples × prunable weights): OBD streams its diagonal when G does not fit
HOLDS_G = ("chita", "chita++", "woodfisher")
RECAL_TIP = ("Recompute BatchNorm's running statistics on calibration images after pruning; kept only "
             "if held-out calibration loss falls. Untick to keep the stored statistics.")


class ControlsPanel(QGroupBox):
    """Pruning settings. Signals:

    * ``preview_requested(sparsity)`` — debounced while the slider moves (magnitude preview);
    * ``run_requested()`` — Run button, or slider release when "run on release" is on;
    * ``settings_changed()`` — any control changed (the window marks results stale).
    """

    preview_requested = Signal(float)
    run_requested = Signal()
    settings_changed = Signal()
    unfold_requested = Signal()  # "all settings" in the folded summary line
    fold_requested = Signal()  # "fewer settings" under the rows the window would fold

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Pruning", parent)
        self.method = QComboBox()
        for m in METHODS:
            self.method.addItem(METHOD_LABELS.get(m, m), m)
        self.method.setToolTip("Pruning method (Ctrl+1 … Ctrl+6)")

        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 99)
        self.slider.setPageStep(5)
        self.slider.setToolTip("Fraction of prunable weights set to zero (Ctrl+Up / Ctrl+Down: ±1%)")
        self.spin = QSpinBox()
        self.spin.setRange(0, 99)
        self.spin.setSuffix(" %")
        self.spin.setAlignment(Qt.AlignmentFlag.AlignRight)
        self.spin.setMinimumWidth(76)
        self.slider.valueChanged.connect(self.spin.setValue)
        self.spin.valueChanged.connect(self.slider.setValue)

        self.scope = QComboBox()
        for value, label in SCOPES:
            self.scope.addItem(label, value)

        self.pattern = QComboBox()
        for value, label in PATTERNS:
            self.pattern.addItem(label, value)
        self.pattern.setToolTip(PATTERN_TIP)
        self._free_percent: int | None = None  # the slider's own value while a pattern sets it

        # layers left dense (core.pruning.PruneRequest.keep_first / keep_last)
        self.keep_first = QCheckBox("First layer")
        self.keep_first.setToolTip("Leave the first prunable layer (the input layer) dense: it is small and "
                                   "sees the raw input, so deployments often keep it whole")
        self.keep_last = QCheckBox("Last layer")
        self.keep_last.setToolTip("Leave the last prunable layer (usually the classifier) dense")

        self.samples = QSpinBox()
        self.samples.setRange(16, 100_000)
        self.samples.setSingleStep(64)
        self.samples.setToolTip("n: per-sample gradients used for the Fisher approximation")

        self.per_row = QSpinBox()
        self.per_row.setRange(1, MAX_IMAGES_PER_ROW)
        self.per_row.setSuffix(" per row")
        self.per_row.setToolTip("Calibration images averaged into each gradient row. Above 1 the Fisher "
                                "comes from samples × this many images at the solver cost of the samples "
                                "alone (mini-batch rows); lowered to what the calibration set holds. "
                                "1 = one image per row, as in the papers.")

        self.lam = QLineEdit()
        self.lam.setPlaceholderText("auto")
        validator = QDoubleValidator(0.0, 1e12, 12, self.lam)
        validator.setNotation(QDoubleValidator.Notation.ScientificNotation)
        self.lam.setValidator(validator)
        self.lam.setToolTip("Ridge λ. Empty = chosen automatically on held-out calibration loss; or type e.g. 1e-3")
        self.lam.setClearButtonEnabled(True)

        self.stages = QSpinBox()
        self.stages.setRange(0, 50)
        self.stages.setSpecialValueText("auto")
        self.stages.setToolTip("CHITA++ stages of rising sparsity, gradients recomputed at each. "
                               "auto = one per prunable layer, 10 to 20")

        self.refine = QSpinBox()
        self.refine.setRange(0, MAX_REFINE_STEPS)
        self.refine.setSpecialValueText("off")
        self.refine.setSuffix(" steps")
        self.refine.setToolTip("After pruning, refine the kept weights (mask fixed) with up to this many "
                               "damped Gauss-Newton steps on the calibration images; a step is kept only "
                               "if held-out calibration loss falls. Helps most at high sparsity.")

        self.recal = QCheckBox("Recalibrate after pruning")
        self.recal.setChecked(True)
        self.recal.setToolTip(RECAL_TIP)
        self.bn_images = QComboBox()
        for value in BN_AUGMENTS:  # core.augment's choices, in its order
            self.bn_images.addItem(BN_AUGMENT_LABELS[value], value)
        self.bn_images.setToolTip(BN_IMAGES_TIP)

        self.update_scale = QComboBox()
        for value, label in UPDATE_CHOICES:
            self.update_scale.addItem(label, value)
        self.update_scale.setToolTip(UPDATE_TIP)

        self.autorun = QCheckBox("Run method when the slider is released")
        self.run_button = QPushButton("Run  (Ctrl+R)")
        self.run_button.setObjectName("Primary")
        self.run_button.setMinimumHeight(34)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.run_button.clicked.connect(self.run_requested)

        slider_row = QHBoxLayout()
        slider_row.addWidget(self.slider, 1)
        slider_row.addWidget(self.spin)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        form.addRow("Method", self.method)
        form.addRow("Sparsity", slider_row)
        form.addRow("Pattern", self.pattern)
        form.addRow("Scope", self.scope)
        keep_row = QHBoxLayout()
        keep_row.addWidget(self.keep_first)
        keep_row.addWidget(self.keep_last)
        keep_row.addStretch(1)
        form.addRow("Keep dense", keep_row)
        self._keep_row = keep_row
        form.addRow("Samples", self.samples)
        # shown under Samples when more are set than this model's G fits in memory
        self.samples_note = QLabel("")
        self.samples_note.setObjectName("Muted")
        self.samples_note.linkActivated.connect(self._use_samples_limit)
        self._samples_limit: int | Callable[[], int] | None = None
        form.addRow("", self.samples_note)
        form.addRow("Images", self.per_row)
        form.addRow("λ", self.lam)
        form.addRow("Stages", self.stages)
        form.addRow("Refine", self.refine)
        form.addRow("Update", self.update_scale)
        form.addRow("BatchNorm", self.recal)
        form.addRow("BN images", self.bn_images)
        self._form = form
        # presentation mode hides these rows (their values still apply) and names them in one line
        self.advanced = (self.samples, self.per_row, self.lam, self.stages, self.refine,
                         self.update_scale, self.recal, self.bn_images)
        self.hidden_note = QLabel("")
        self.hidden_note.setObjectName("Muted")
        self.hidden_note.setWordWrap(True)
        self.hidden_note.setTextFormat(Qt.TextFormat.RichText)
        self.hidden_note.setVisible(False)
        self.hidden_note.linkActivated.connect(lambda _link: self.unfold_requested.emit())
        self.fold_note = QLabel('<a href="fewer">Fewer settings</a> (Run and the Preview back in view)')
        self.fold_note.setObjectName("Muted")
        self.fold_note.setVisible(False)
        self.fold_note.linkActivated.connect(lambda _link: self.fold_requested.emit())
        for label in (self.hidden_note, self.fold_note, self.samples_note):  # Tab reaches the links
            label.setTextInteractionFlags(Qt.TextInteractionFlag.LinksAccessibleByMouse
                                          | Qt.TextInteractionFlag.LinksAccessibleByKeyboard)
        self.compact = False
        self.deep = False  # also folded: Pattern, Scope and Keep dense (set_compact)
        self.terse = False  # the folded rows' line down to its link (set_compact)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button, 2)
        buttons.addWidget(self.cancel_button, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.hidden_note)
        layout.addWidget(self.fold_note)
        layout.addWidget(self.autorun)
        layout.addLayout(buttons)

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(PREVIEW_DEBOUNCE_MS)
        self._debounce.timeout.connect(lambda: self.preview_requested.emit(self.sparsity()))
        self.slider.valueChanged.connect(self._on_sparsity)
        self.slider.sliderReleased.connect(self._on_released)
        for signal in (self.method.currentIndexChanged, self.scope.currentIndexChanged,
                       self.samples.valueChanged, self.lam.textChanged, self.stages.valueChanged,
                       self.refine.valueChanged, self.per_row.valueChanged, self.recal.toggled,
                       self.bn_images.currentIndexChanged, self.update_scale.currentIndexChanged,
                       self.keep_first.toggled, self.keep_last.toggled, self.pattern.currentIndexChanged):
            signal.connect(self.settings_changed)
            signal.connect(self._update_hidden_note)
        self.method.currentIndexChanged.connect(self._update_stages_enabled)
        self._update_stages_enabled()
        self.pattern.currentIndexChanged.connect(self._apply_pattern)
        self.method.currentIndexChanged.connect(self._update_samples_note)
        self.samples.valueChanged.connect(self._update_samples_note)
        self._update_samples_note()
        self.scope.currentIndexChanged.connect(self._debounce.start)
        self.recal.toggled.connect(self._debounce.start)  # the preview follows the box too
        self.bn_images.currentIndexChanged.connect(self._debounce.start)
        self.keep_first.toggled.connect(self._debounce.start)
        self.keep_last.toggled.connect(self._debounce.start)

    # -- values -----------------------------------------------------------------------------
    def sparsity(self) -> float:
        """The chosen sparsity as a fraction."""
        return self.slider.value() / 100.0

    def set_sparsity(self, fraction: float) -> None:
        """Move the slider to ``fraction`` (rounded to whole percent); under a pattern, which
        fixes the sparsity, the slider's own value moves and shows when the pattern is cleared."""
        value = int(round(100 * fraction))
        if self._free_percent is not None:
            self._free_percent = value
        else:
            self.slider.setValue(value)

    def step_sparsity(self, delta_percent: int) -> None:
        """Nudge the sparsity by whole percents (keyboard shortcuts); not under a pattern."""
        if self._free_percent is None:
            self.slider.setValue(max(0, min(99, self.slider.value() + delta_percent)))

    def pattern_value(self) -> str:
        """PruneRequest.pattern for the Pattern box: "" (none) or "N:M"."""
        return str(self.pattern.currentData() or "")

    def set_pattern(self, text: str) -> None:
        """Choose a pattern by its value ("" for none)."""
        self.pattern.setCurrentIndex(max(0, self.pattern.findData(text or "")))

    def method_name(self) -> str:
        """Chosen method key (core.pruning.METHODS)."""
        return str(self.method.currentData())

    def set_method(self, name: str) -> None:
        """Choose a method by key."""
        i = self.method.findData(name)
        if i >= 0:
            self.method.setCurrentIndex(i)

    def kept_dense(self) -> tuple[bool, bool]:
        """(keep the first layer dense, keep the last layer dense): the Keep dense boxes."""
        return self.keep_first.isChecked(), self.keep_last.isChecked()

    def scope_name(self) -> str:
        """"global" or "layer"; "global" under a pattern (every layer's sparsity is the
        pattern's either way, and the box is disabled)."""
        return "global" if self.pattern_value() else str(self.scope.currentData())

    def lam_value(self) -> float | None:
        """λ, or None for automatic."""
        text = self.lam.text().strip().replace(",", ".")
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            raise StudioError(f"λ must be a number, got {text!r}.", field="λ",
                              fix="Type a value such as 1e-3, or clear the field for automatic λ.") from None
        if value < 0:
            raise StudioError("λ must not be negative.", field="λ", fix="Use a value ≥ 0, or clear the field.")
        return value

    def request(self, *, layers: tuple[str, ...] | None = None) -> PruneRequest:
        """The core.pruning.PruneRequest these controls describe."""
        return PruneRequest(method=self.method_name(), sparsity=self.sparsity(), scope=self.scope_name(),
                            layers=layers, samples=int(self.samples.value()), lam=self.lam_value(),
                            stages=int(self.stages.value()), refine_steps=int(self.refine.value()),
                            images_per_row=int(self.per_row.value()),
                            recalibrate_bn=self.recalibrate_bn(), bn_augment=self.bn_augment(),
                            update_scale=self.update_scale_value(), keep_first=self.keep_first.isChecked(),
                            keep_last=self.keep_last.isChecked(), pattern=self.pattern_value())

    def update_scale_value(self) -> float | None:
        """PruneRequest.update_scale for the Update box: 1.0 (whole) or None (auto)."""
        return self.update_scale.currentData()

    def recalibrate_bn(self) -> bool | None:
        """PruneRequest.recalibrate_bn for the BatchNorm box: None (on where there is BatchNorm)
        or False."""
        return None if self.recal.isChecked() else False

    def bn_augment(self) -> str:
        """PruneRequest.bn_augment for the BN images box: "auto", "none" or "crop_flip"."""
        return str(self.bn_images.currentData())

    def set_batchnorm(self, present: bool, compiled: bool = False) -> None:
        """Enable the BatchNorm boxes only for a model whose BatchNorm can be recalibrated (their
        values are kept). ``compiled``: the model has BatchNorm inside a TorchScript or .pt2
        graph, used as stored."""
        why = ("This model's BatchNorm is compiled (TorchScript or .pt2): its statistics are used "
               "as stored. Open the network's state_dict with its architecture to recalibrate them."
               if compiled else "This model has no BatchNorm layers.")
        self.recal.setEnabled(present)
        self.bn_images.setEnabled(present)
        self.bn_images.setToolTip(BN_IMAGES_TIP if present else why)
        self.recal.setText("Recalibrate after pruning" if present else
                           "Recalibrate (compiled: used as stored)" if compiled else
                           "Recalibrate (the model has none)")
        self.recal.setToolTip(RECAL_TIP if present else why)
        self._update_hidden_note()

    def set_samples_limit(self, limit: int | Callable[[], int] | None) -> None:
        """The most samples this model's G fits in memory (:func:`core.fisher.rows_that_fit`),
        or what computes it from the memory available at the time (the note is then up to date
        whenever the box or the method changes), or None: above it, a note under Samples says so
        for the methods that hold G, with a link that sets the box to it (the box is never
        changed on its own)."""
        self._samples_limit = limit
        self._update_samples_note()

    @property
    def samples_limit(self) -> int | None:
        """The limit now (computed afresh where :meth:`set_samples_limit` was given a function)."""
        limit = self._samples_limit
        return limit() if callable(limit) else limit

    def _update_samples_note(self, *_args) -> None:
        limit = self.samples_limit
        over = (limit is not None and self.samples.value() > limit
                and self.method_name() in HOLDS_G)
        if over:
            self.samples_note.setText(f"At most {limit:,} fit in memory. <a href='use'>Use {limit:,}</a>")
            self.samples_note.setToolTip(
                f"A run of this method with more than {limit:,} samples is refused on this model: "
                "its per-sample gradients (samples × prunable weights, in float32, with the "
                "solver's workspace) must fit in half the available RAM.")
        self._form.setRowVisible(self.samples_note, over)  # folded too: a run would be refused

    def _use_samples_limit(self, _link: str = "") -> None:
        limit = self.samples_limit
        if limit is not None:
            self.samples.setValue(max(self.samples.minimum(), limit))

    def set_compact(self, on: bool, can_fold: bool = False, deep: bool = False, terse: bool = False) -> None:
        """Fold the rows past Scope (their values still apply to every run) into one muted line
        that names them, with a link to show them ("all settings"), so that Run and the Preview
        stay in view; ``deep`` folds Pattern, Scope and Keep dense too (a screen 720 px high in
        presentation mode); ``terse`` leaves only the link, the line in its tooltip (the two or
        three lines it takes in presentation mode kept the accuracy change out of view at 720 px);
        ``can_fold``: with the rows shown, offer a link to fold them again."""
        self.compact = bool(on)
        self.deep = self.compact and bool(deep)
        self.terse = self.deep and bool(terse)
        for w in self.advanced:
            self._form.setRowVisible(w, not self.compact)
        for row in (self.pattern, self.scope, self._keep_row):
            self._form.setRowVisible(row, not self.deep)
        self.hidden_note.setVisible(self.compact)
        self.fold_note.setVisible(not self.compact and can_fold)
        self._update_hidden_note()
        self._update_samples_note()

    def hidden_summary(self) -> str:
        """The settings the folded rows hold, as one line."""
        lam = self.lam.text().strip() or "auto"
        stages = self.stages.text() if self.method_name() == "chita++" else None
        bn = ("recalibrate" if self.recal.isChecked() else "stored statistics") if self.recal.isEnabled() \
            else None
        parts = []
        if self.deep:
            parts.append(f"Pattern {self.pattern_value() or 'none'}")
            parts.append("Scope per layer" if self.scope.currentData() == "layer" else "Scope global")
            kept = [name for name, box in (("first", self.keep_first), ("last", self.keep_last))
                    if box.isChecked()]
            if kept:
                parts.append(f"Keep {' and '.join(kept)} layer dense")
        parts += [f"Samples {self.samples.value()}", f"Images {self.per_row.value()} per row", f"λ {lam}"]
        if stages is not None:
            parts.append(f"Stages {stages}")
        parts.append(f"Refine {self.refine.text()}")
        if self.method_name() in UPDATE_SCALE_METHODS and self.update_scale_value() is None:
            parts.append("Update auto")
        if bn is not None:
            parts.append(f"BatchNorm: {bn}, {self.bn_images.currentText().lower()}")
        return " · ".join(parts)

    def _update_hidden_note(self, *_args) -> None:
        if self.compact:
            summary = html.escape(self.hidden_summary())
            self.hidden_note.setText('<a href="all">All settings</a>' if self.terse
                                     else f'{summary} — <a href="all">all settings</a>')
            self.hidden_note.setToolTip(self.hidden_summary() if self.terse else "")

    def set_busy(self, busy: bool) -> None:
        """Enable Cancel (and disable Run) while a foreground job runs."""
        self.run_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

    # -- persistence ------------------------------------------------------------------------
    def load_settings(self, s: QSettings) -> None:
        """Restore the controls from QSettings."""
        for w in (self.method, self.scope, self.samples, self.lam, self.stages, self.refine, self.per_row,
                  self.recal, self.bn_images, self.update_scale, self.keep_first, self.keep_last):
            w.blockSignals(True)
        self.set_method(st.read(s, "controls/method", "chita"))
        i = self.scope.findData(st.read(s, "controls/scope", "global"))
        self.scope.setCurrentIndex(max(0, i))
        self.samples.setValue(st.read(s, "controls/samples", 1000, int))
        self.lam.setText(st.read(s, "controls/lambda", ""))
        self.stages.setValue(st.read(s, "controls/stages", 0, int))
        self.refine.setValue(st.read(s, "controls/refine_steps", 0, int))
        self.per_row.setValue(st.read(s, "controls/images_per_row", 1, int))
        self.recal.setChecked(st.read(s, "controls/recalibrate_bn", True, bool))
        self.bn_images.setCurrentIndex(max(0, self.bn_images.findData(st.read(s, "controls/bn_augment", "auto"))))
        self.update_scale.setCurrentIndex(1 if st.read(s, "controls/update_scale", "whole") == "auto" else 0)
        self.keep_first.setChecked(st.read(s, "controls/keep_first", False, bool))
        self.keep_last.setChecked(st.read(s, "controls/keep_last", False, bool))
        for w in (self.method, self.scope, self.samples, self.lam, self.stages, self.refine, self.per_row,
                  self.recal, self.bn_images, self.update_scale, self.keep_first, self.keep_last):
            w.blockSignals(False)
        self._update_stages_enabled()
        self._update_samples_note()
        self.slider.blockSignals(True)
        self._free_percent = None
        self.slider.setValue(st.read(s, "controls/sparsity_percent", 70, int))
        self.pattern.blockSignals(True)
        self.set_pattern(st.read(s, "controls/pattern", ""))
        self.pattern.blockSignals(False)
        self._apply_pattern()
        self.spin.setValue(self.slider.value())
        self.slider.blockSignals(False)
        self.autorun.setChecked(st.read(s, "controls/run_on_release", True, bool))
        self._update_hidden_note()

    def save_settings(self, s: QSettings) -> None:
        """Store the controls in QSettings."""
        s.setValue("controls/method", self.method_name())
        s.setValue("controls/scope", str(self.scope.currentData()))
        s.setValue("controls/keep_first", self.keep_first.isChecked())
        s.setValue("controls/keep_last", self.keep_last.isChecked())
        s.setValue("controls/pattern", str(self.pattern.currentData() or ""))
        s.setValue("controls/samples", int(self.samples.value()))
        s.setValue("controls/lambda", self.lam.text().strip())
        s.setValue("controls/stages", int(self.stages.value()))
        s.setValue("controls/refine_steps", int(self.refine.value()))
        s.setValue("controls/images_per_row", int(self.per_row.value()))
        s.setValue("controls/recalibrate_bn", self.recal.isChecked())
        s.setValue("controls/bn_augment", self.bn_augment())
        s.setValue("controls/update_scale", "auto" if self.update_scale_value() is None else "whole")
        s.setValue("controls/sparsity_percent", int(self.slider.value() if self._free_percent is None
                                                    else self._free_percent))
        s.setValue("controls/run_on_release", self.autorun.isChecked())

    def cancel_pending(self) -> None:
        """Drop a preview the slider has scheduled but not yet asked for (the window closes)."""
        self._debounce.stop()

    # -- internals ---------------------------------------------------------------------------
    def _update_stages_enabled(self, *_args) -> None:
        self.stages.setEnabled(self.method_name() == "chita++")
        self.update_scale.setEnabled(self.method_name() in UPDATE_SCALE_METHODS)

    def _apply_pattern(self, *_args) -> None:
        """A pattern fixes the sparsity (the slider shows it, disabled, and gets its own value
        back when the pattern is cleared) and makes every layer's sparsity the same (Scope
        disabled)."""
        pattern = parse_pattern(self.pattern_value())
        if pattern is not None:
            if self._free_percent is None:
                self._free_percent = self.slider.value()
            self.slider.setValue(int(round(100 * pattern.sparsity)))
        elif self._free_percent is not None:
            value, self._free_percent = self._free_percent, None
            self.slider.setValue(value)
        for widget in (self.slider, self.spin, self.scope):
            widget.setEnabled(pattern is None)

    def _on_sparsity(self, _value: int) -> None:
        self.settings_changed.emit()
        self._debounce.start()

    def _on_released(self) -> None:
        if self.autorun.isChecked():
            self._debounce.stop()
            self.preview_requested.emit(self.sparsity())
            self.run_requested.emit()
