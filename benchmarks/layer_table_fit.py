"""The layer table's column fitting on a large network: a splitter drag and a preview update.

The layer table hides optional columns and shortens names to keep *After* in view
(`LayerTable.fit_columns`), on every resize. Until 2026-12-08 its sections were in Qt's
ResizeToContents mode, which measures every cell of every column again whenever the header's
length is asked for: each fit measured the table about six times, and a splitter drag did that
at every step. The table now measures each column once per change of its data (or fonts) and
fits by arithmetic on those widths.

This script times both on the layer rows of torchvision's ResNet-50 (random weights, no
download; 54 prunable rows shown, as the app shows by default) and of a synthetic 400-layer
network, offscreen unless a display is set:

- *drag*: the table resized in 40 steps from 900 to 420 px and back, each step's events
  processed (what a splitter drag does); milliseconds per step;
- *preview*: new *After* values and header (a slider preview's result), processed until the
  columns are fitted again; milliseconds;
- *fit*: one `fit_columns(width)` call at a width that hides columns; milliseconds.

The baseline is the previous code, in this file (``ResizeToContentsTable``), in the same run;
both tables end a drag with the same columns shown at the same widths (checked).

    .venv/bin/python benchmarks/layer_table_fit.py
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import core  # noqa: E402,F401  (first: the OpenMP wait policy the app runs with)

# isort: split
import torch.nn as nn  # noqa: E402
import torchvision  # noqa: E402
from PySide6.QtWidgets import QApplication, QHeaderView  # noqa: E402

from gui.jobs import LayerRow  # noqa: E402
from gui.layer_table import (  # noqa: E402
    COL_AFTER,
    COL_NAME,
    COL_NOW,
    MIN_NAME_WIDTH,
    OPTIONAL_COLUMNS,
    LayerTable,
)


class ResizeToContentsTable(LayerTable):
    """The layer table as it was before 2026-12-08: sections in ResizeToContents mode, and the
    fit reading the header's length after each change (each read measures the cells again)."""

    def __init__(self) -> None:
        super().__init__()
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self._refit.timeout.disconnect()  # Qt resized the sections on data changes by itself

    def fit_columns(self, width: int | None = None) -> int:  # the previous code, unchanged
        rows = self.source.rows()
        dense_now = bool(rows) and all(not r.sparsity_now for r in rows)
        optional = ((COL_NOW,) if dense_now else ()) + OPTIONAL_COLUMNS
        self.setColumnHidden(COL_NOW, self.compact and dense_now)
        for col in OPTIONAL_COLUMNS:
            self.setColumnHidden(col, self.compact)
        self.source.set_short_after(self.compact)
        header = self.horizontalHeader()
        header.setSectionResizeMode(COL_NAME, QHeaderView.ResizeMode.ResizeToContents)
        self.source.set_short_names(False)
        self.resizeColumnsToContents()
        width = self.viewport().width() if width is None else width
        for col in optional:
            if header.length() <= width:
                break
            self.setColumnHidden(col, True)
        if header.length() > width:
            self.source.set_short_names(True)
            self.resizeColumnToContents(COL_NAME)
        if header.length() > width and not self.compact:
            self.source.set_short_after(True)
            self.resizeColumnToContents(COL_AFTER)
        excess = header.length() - width
        self.names_shortened = excess > 0 and header.sectionSize(COL_NAME) > MIN_NAME_WIDTH
        if self.names_shortened:
            header.setSectionResizeMode(COL_NAME, QHeaderView.ResizeMode.Interactive)
            header.resizeSection(COL_NAME, max(MIN_NAME_WIDTH, header.sectionSize(COL_NAME) - excess))
        return header.length()


def model_rows(model: nn.Module) -> list[LayerRow]:
    """One row per weight of a module with one (convs, linears and norms), as the app lists them."""
    total = sum(p.numel() for p in model.parameters())
    rows = []
    for name, mod in model.named_modules():
        w = getattr(mod, "weight", None)
        if not isinstance(w, nn.Parameter):
            continue
        prunable = isinstance(mod, (nn.Conv2d, nn.Linear))
        rows.append(LayerRow(f"{name}.weight", f"{name}.weight", type(mod).__name__, tuple(w.shape),
                             w.numel(), w.numel() / total, prunable, 0.0))
    return rows


def synthetic_rows(layers: int) -> list[LayerRow]:
    """A transformer-like list: ``layers`` Linear weights with long names, and a norm beside each."""
    rows = []
    for i in range(layers):
        name = f"encoder.layers.encoder_layer_{i // 4}.mlp.linear_{i % 4}.weight"
        rows.append(LayerRow(name, name, "Linear", (3072, 768), 3072 * 768, 1 / (2 * layers), True, 0.0))
        norm = f"encoder.layers.encoder_layer_{i // 4}.ln_{i % 4}.weight"
        rows.append(LayerRow(norm, norm, "LayerNorm", (768,), 768, 1 / (2 * layers), False, 0.0))
    return rows


def prunable_only(table: LayerTable) -> None:
    """The app's default filter ("Prunable weights only")."""
    names = [r.name for r in table.source.rows() if r.prunable]
    table.proxy.setFilterRegularExpression("^(" + "|".join(n.replace(".", r"\.") for n in names) + ")$")


def measure(cls: type[LayerTable], rows: list[LayerRow], app: QApplication) -> dict[str, float]:
    table = cls()
    table.source.set_rows(rows)
    prunable_only(table)
    keys = [r.key for r in rows if r.prunable]
    table.source.set_after({k: 0.7 for k in keys}, "Magnitude (global)")
    table.resize(900, 600)
    table.show()
    app.processEvents()
    table.fit_columns()
    app.processEvents()
    widths = list(range(900, 420, -12)) + list(range(420, 900, 12))
    steps = []
    for w in widths:
        t0 = time.perf_counter()
        table.resize(w, 600)
        app.processEvents()
        steps.append(time.perf_counter() - t0)
    table.resize(520, 600)
    app.processEvents()
    shown = tuple((c, table.horizontalHeader().sectionSize(c)) for c in range(table.model().columnCount())
                  if not table.isColumnHidden(c))
    previews = []
    for i in range(5):
        t0 = time.perf_counter()
        table.source.set_after({k: 0.5 + 0.01 * i for k in keys}, "CHITA (IHT + backsolve)" if i % 2 else
                               "Magnitude (global)")
        app.processEvents()
        app.processEvents()  # the refit scheduled by the change
        previews.append(time.perf_counter() - t0)
    fits = []
    for _ in range(5):
        t0 = time.perf_counter()
        table.fit_columns(300)
        fits.append(time.perf_counter() - t0)
    table.close()
    table.deleteLater()
    app.processEvents()
    return {"drag": 1000 * statistics.median(steps), "drag_max": 1000 * max(steps),
            "preview": 1000 * statistics.median(previews), "fit": 1000 * statistics.median(fits),
            "shown": shown, "rows": table.model().rowCount()}


def main() -> int:
    app = QApplication.instance() or QApplication(sys.argv)
    cases = [("ResNet-50 (torchvision)", model_rows(torchvision.models.resnet50())),
             ("synthetic, 400 Linear layers", synthetic_rows(400))]
    print("| network | rows shown | implementation | drag step ms (median / max) | preview ms | "
          "fit_columns ms | ratio (drag, preview, fit) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label, rows in cases:
        before = measure(ResizeToContentsTable, rows, app)
        after = measure(LayerTable, rows, app)
        if before["shown"] != after["shown"]:
            print(f"{label}: the two tables end the drag with other columns: {before['shown']} against "
                  f"{after['shown']}", file=sys.stderr)
            return 1
        for name, m in (("ResizeToContents (previous)", before), ("measured once (current)", after)):
            ratio = ("1.00×" if m is before else
                     ", ".join(f"{m[k] / before[k]:.2f}×" for k in ("drag", "preview", "fit")))
            print(f"| {label} | {m['rows']} | {name} | {m['drag']:.1f} / {m['drag_max']:.1f} | "
                  f"{m['preview']:.1f} | {m['fit']:.1f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
