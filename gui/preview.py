"""The preview panel: accuracy before and after pruning with 95% intervals, loss, nonzeros and
ONNX sizes (the file Export writes, with dense or sparse storage, and deflate-compressed); the change against the dense model (and against
magnitude pruning after a run) with its paired 95% interval on the same images."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QGridLayout,
    QGroupBox,
    QLabel,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from core.evaluate import PairedDifference, paired_or_none


def fmt_bytes(n: int | None) -> str:
    """1536 → '1.5 KiB'; None → '–'."""
    if n is None:
        return "–"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def fmt_acc(ev: Any) -> str:
    """EvalResult → '97.2%'."""
    return "–" if ev is None else f"{100 * ev.accuracy:.1f}%"


def fmt_ci(ev: Any) -> str:
    """EvalResult → '96.0–98.1' (the 95% interval, in percent)."""
    if ev is None:
        return ""
    lo, hi = ev.accuracy_ci
    return f"{100 * lo:.1f}–{100 * hi:.1f}"


class PreviewPanel(QGroupBox):
    """Dense vs pruned numbers. The window calls :meth:`set_dense` and :meth:`set_after`.
    ``delta_shown``: the line of the accuracy change appeared or went (the sidebar's height
    above the fold changed)."""

    delta_shown = Signal()

    ROWS = (("loss", "Loss"), ("nonzeros", "Nonzeros"), ("sparsity", "Sparsity"),
            ("onnx", "ONNX size"), ("deflate", "Compressed"), ("time", "Time"))

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Preview", parent)
        grid = QGridLayout()
        grid.setHorizontalSpacing(14)
        grid.setVerticalSpacing(4)
        self.dense_title = QLabel("Dense")
        self.after_title = QLabel("After pruning")
        for lab in (self.dense_title, self.after_title):
            lab.setObjectName("Muted")
            lab.setAlignment(Qt.AlignmentFlag.AlignRight)
        self.dense_acc = QLabel("–")
        self.dense_acc.setObjectName("BigNumber")
        self.after_acc = QLabel("–")
        self.after_acc.setObjectName("BigNumberAccent")
        self.dense_ci = QLabel("")
        self.after_ci = QLabel("")
        for lab in (self.dense_acc, self.after_acc, self.dense_ci, self.after_ci):
            lab.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        for lab in (self.dense_ci, self.after_ci):
            lab.setObjectName("Muted")
        acc_label = QLabel("Accuracy")
        ci_label = QLabel("95% interval")
        ci_label.setObjectName("Muted")
        grid.addWidget(self.dense_title, 0, 1)
        grid.addWidget(self.after_title, 0, 2)
        grid.addWidget(acc_label, 1, 0)
        grid.addWidget(self.dense_acc, 1, 1)
        grid.addWidget(self.after_acc, 1, 2)
        grid.addWidget(ci_label, 2, 0)
        grid.addWidget(self.dense_ci, 2, 1)
        grid.addWidget(self.after_ci, 2, 2)
        self.cells: dict[str, tuple[QLabel, QLabel]] = {}
        # the change in accuracy sits under the accuracies it compares (rows 3–4), above the
        # sizes: where the sidebar scrolls, it is the detail rows that go below the fold
        self.names: dict[str, QLabel] = {}
        for r, (key, title) in enumerate(self.ROWS, start=5):
            name = QLabel(title)
            self.names[key] = name
            name.setObjectName("Muted")
            d, a = QLabel("–"), QLabel("–")
            for lab in (d, a):
                lab.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            grid.addWidget(name, r, 0)
            grid.addWidget(d, r, 1)
            grid.addWidget(a, r, 2)
            self.cells[key] = (d, a)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(2, 1)
        self.delta = QLabel("")
        self.delta.setAlignment(Qt.AlignmentFlag.AlignRight)
        self.delta.setWordWrap(True)
        self.versus = QLabel("")
        self.versus.setAlignment(Qt.AlignmentFlag.AlignRight)
        self.versus.setWordWrap(True)
        self.versus.setObjectName("Muted")
        self.versus.setVisible(False)
        self.caption = QLabel("Loading…")
        self.caption.setObjectName("Banner")
        self.caption.setWordWrap(True)
        self.caption.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        grid.addWidget(self.delta, 3, 0, 1, 3)
        grid.addWidget(self.versus, 4, 0, 1, 3)
        layout = QVBoxLayout(self)
        layout.addLayout(grid)
        layout.addWidget(self.caption)
        self._dense_eval: Any = None
        self._after_eval: Any = None
        self._sparse_storage = False
        self._float16 = False
        # per column: (dense file, deflated), (sparse-storage file, deflated)
        self._sizes: list[tuple[tuple[int | None, int | None], tuple[int | None, int | None]]] = [
            ((None, None), (None, None)), ((None, None), (None, None))]
        self._sizes_float16 = [False, False]  # per column: whether its sizes are with float16 weights

    def clear(self) -> None:
        """Forget all numbers (a new model or data set)."""
        self.set_dense(None, None, None, None)
        self.set_after(None, title="After pruning", caption="")
        self.set_versus(None)

    def set_sparse_storage(self, on: bool) -> None:
        """Show the ONNX size of the file Export writes with sparse storage (``on``) or dense."""
        self._sparse_storage = bool(on)
        self._show_sizes()

    def set_float16(self, on: bool) -> None:
        """Show the ONNX size of the file Export writes with float16 weights (``on``) or float32;
        a column whose sizes were measured the other way says "measuring…" until they come."""
        self._float16 = bool(on)
        self._show_sizes()

    def _show_sizes(self) -> None:
        parts = [name for name, on in (("sparse", self._sparse_storage), ("float16", self._float16)) if on]
        self.names["onnx"].setText("ONNX size" + (f" ({', '.join(parts)})" if parts else ""))
        for column in (0, 1):
            self._show_size(column)

    def _show_size(self, column: int) -> None:
        (dense, dense_z), (sparse, sparse_z) = self._sizes[column]
        half = self._sizes_float16[column]
        if dense is not None and half != self._float16:  # measured for the other setting
            for key in ("onnx", "deflate"):
                self.cells[key][column].setText("measuring…")
                self.cells[key][column].setToolTip("Measuring the file with" + ("" if self._float16 else "out")
                                                   + " float16 weights (File ▸ Float16 weights in ONNX files).")
            return
        shown = (sparse, sparse_z) if self._sparse_storage else (dense, dense_z)
        weights = (" Weights in float16 (File ▸ Float16 weights in ONNX files: each weight matrix stored in "
                   "float16 and computed in float32)." if half else "")
        tip = ("" if dense is None else
               f"The .onnx file Export writes: {fmt_bytes(dense)} ({fmt_bytes(dense_z)} deflated) with every "
               f"weight written out, {fmt_bytes(sparse)} ({fmt_bytes(sparse_z)} deflated) with sparse storage "
               "(File ▸ Sparse storage in ONNX files: the weights that are mostly zeros as ONNX sparse "
               f"initializers, which ONNX Runtime reads; other runtimes may not).{weights}")
        for key, value in zip(("onnx", "deflate"), shown):
            self.cells[key][column].setText(fmt_bytes(value))
            self.cells[key][column].setToolTip(tip)

    def set_dense(self, ev: Any, nonzeros: int | None, onnx_bytes: int | None, compressed: int | None,
                  sparse_bytes: int | None = None, sparse_compressed: int | None = None,
                  sizes_float16: bool = False) -> None:
        """Dense model numbers (EvalResult or None while computing; ``sizes_float16``: the sizes
        are with float16 weights)."""
        self._dense_eval = ev
        self.dense_acc.setText(fmt_acc(ev))
        self.dense_ci.setText(fmt_ci(ev))
        self.cells["loss"][0].setText("–" if ev is None else f"{ev.loss:.3f}")
        self.cells["nonzeros"][0].setText("–" if nonzeros is None else f"{nonzeros:,}")
        self.cells["sparsity"][0].setText("–" if nonzeros is None else "0.0%")
        self.set_dense_sizes(onnx_bytes, compressed, sparse_bytes, sparse_compressed, sizes_float16)
        self._update_delta()

    def set_dense_sizes(self, onnx_bytes: int | None, compressed: int | None, sparse_bytes: int | None,
                        sparse_compressed: int | None, sizes_float16: bool = False) -> None:
        """The dense model's ONNX sizes alone (measured again after a setting changed)."""
        self._sizes[0] = ((onnx_bytes, compressed), (sparse_bytes, sparse_compressed))
        self._sizes_float16[0] = bool(sizes_float16)
        self._show_size(0)

    def set_dense_sparsity(self, fraction: float | None) -> None:
        """Sparsity the dense model already has (usually 0)."""
        self.cells["sparsity"][0].setText("–" if fraction is None else f"{100 * fraction:.1f}%")

    def set_after(self, ev: Any, *, title: str, caption: str, result: Any = None,
                  onnx_bytes: int | None = None, compressed: int | None = None,
                  sparse_bytes: int | None = None, sparse_compressed: int | None = None,
                  sizes_float16: bool = False, seconds: float | None = None,
                  stale: bool = False, dense_weights: int = 0) -> None:
        """Numbers of the pruned copy: a PruneResult, its EvalResult and its ONNX sizes
        (``sizes_float16``: with float16 weights). ``dense_weights``: weights of the prunable
        layers the result left whole, counted in the nonzeros and the sparsity shown (the
        result's own sparsity, over the layers it pruned, goes in the tooltip)."""
        self._after_eval = ev
        self.after_title.setText(title)
        self.after_acc.setText(fmt_acc(ev))
        self.after_ci.setText(fmt_ci(ev))
        self.cells["loss"][1].setText("–" if ev is None else f"{ev.loss:.3f}")
        if result is not None:
            kept, total = result.nonzeros + dense_weights, result.total + dense_weights
            self.cells["nonzeros"][1].setText(f"{kept:,} / {total:,}")
            self.cells["sparsity"][1].setText(f"{100 * (1 - kept / max(1, total)):.1f}%")
            tip = (f"{100 * result.sparsity:.1f}% of the {result.total:,} weights of the layers pruned; "
                   f"{dense_weights:,} weights of layers kept dense count as kept here" if dense_weights else "")
            self.cells["nonzeros"][1].setToolTip(tip)
            self.cells["sparsity"][1].setToolTip(tip)
        else:
            self.cells["nonzeros"][1].setText("–")
            self.cells["sparsity"][1].setText("–")
        self._sizes[1] = ((onnx_bytes, compressed), (sparse_bytes, sparse_compressed))
        self._sizes_float16[1] = bool(sizes_float16)
        self._show_size(1)
        self.cells["time"][1].setText("–" if seconds is None else f"{seconds:.1f} s")
        self.caption.setText(caption)
        self.caption.setVisible(bool(caption))
        self.after_acc.setEnabled(not stale)
        self._update_delta()

    def after_text(self) -> str:
        """The after-accuracy as shown (tests and screenshots read it)."""
        return self.after_acc.text()

    def _update_delta(self) -> None:
        had = bool(self.delta.text())
        self._set_delta()
        if bool(self.delta.text()) != had:
            self.delta_shown.emit()

    def _set_delta(self) -> None:
        d, a = self._dense_eval, self._after_eval
        if d is None or a is None:
            self.delta.setText("")
            return
        diff = 100 * (a.accuracy - d.accuracy)
        self.delta.setObjectName("Good" if diff >= -1.0 else "Bad")
        text = f"Accuracy change: {diff:+.1f} points"
        ch = paired_or_none(a, d)
        if ch is not None:
            text += f" [{100 * ch.ci[0]:+.1f}, {100 * ch.ci[1]:+.1f}]"
            self.delta.setToolTip(_paired_tip(ch, "the dense model"))
        else:
            self.delta.setToolTip("")
        self.delta.setText(text)
        self.delta.style().unpolish(self.delta)
        self.delta.style().polish(self.delta)

    def set_versus(self, change: PairedDifference | None, label: str = "magnitude", *,
                   pending: bool = False) -> None:
        """After a run: its accuracy minus another method's at the same sparsity (or hide);
        ``pending``: that method's result is still being computed."""
        if change is None and pending:
            self.versus.setText(f"vs {label}: measuring…")
            self.versus.setToolTip(f"{label[0].upper()}{label[1:]} pruning at the same sparsity is "
                                   "being computed in the background for the comparison.")
            self.versus.setVisible(True)
            return
        if change is None:
            self.versus.setText("")
            self.versus.setToolTip("")
            self.versus.setVisible(False)
            return
        lo, hi = change.ci
        verdict = ("better" if lo > 0 else "worse") if change.excludes_zero else "no clear difference"
        self.versus.setText(f"vs {label}: {100 * change.difference:+.1f} points "
                            f"[{100 * lo:+.1f}, {100 * hi:+.1f}]")
        self.versus.setToolTip(f"Against {label} pruning at the same sparsity: {verdict}. "
                               + _paired_tip(change, label))
        self.versus.setVisible(True)

    def versus_text(self) -> str:
        """The comparison line as shown ('' when hidden)."""
        return self.versus.text()


def _paired_tip(change: PairedDifference, other: str) -> str:
    """Tooltip: what the paired interval counts."""
    return (f"In brackets: the 95% interval of the change. Both were scored on the same "
            f"{change.n:,} images: {change.a_only:,} are right only after pruning, "
            f"{change.b_only:,} only with {other}. The interval is for matched pairs "
            "(Agresti–Min), narrower than the two accuracy intervals side by side.")
