"""The desktop app, driven offscreen with pytest-qt on the built-in digits demo.

Settings go to a temporary INI file; dialogs are captured through gui.dialogs hooks so nothing
blocks. pytest-qt's exception capture stays on: an exception in any slot fails the test.
"""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import numpy as np  # noqa: E402

# PySide6, pyqtgraph, pytest-qt and onnxruntime are required dependencies: import them plainly so
# a broken install fails these tests instead of skipping them.
import pyqtgraph  # noqa: E402,F401
import pytest  # noqa: E402
import pytestqt  # noqa: E402,F401
import torch  # noqa: E402
from PySide6.QtCore import QSettings, Qt  # noqa: E402
from PySide6.QtWidgets import QFileDialog  # noqa: E402

from core.evaluate import paired_difference  # noqa: E402
from gui import dialogs  # noqa: E402
from gui import settings as st  # noqa: E402
from gui.jobs import RunOutcome  # noqa: E402
from gui.main_window import MainWindow  # noqa: E402
from gui.workers import Task, TaskRunner  # noqa: E402

LOAD_TIMEOUT_MS = 180_000
RUN_TIMEOUT_MS = 180_000


@pytest.fixture
def settings_dir(tmp_path: Path) -> Path:
    """Point QSettings at a fresh INI folder so tests never touch the user's settings."""
    folder = tmp_path / "settings"
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))
    return folder


@pytest.fixture
def hooks(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """Capture error and information dialogs instead of showing them."""
    captured = SimpleNamespace(errors=[], infos=[])
    monkeypatch.setattr(dialogs, "ERROR_HOOK", lambda title, text, details: captured.errors.append((title, text, details)))
    monkeypatch.setattr(dialogs, "INFO_HOOK", lambda title, text: captured.infos.append((title, text)))
    return captured


@pytest.fixture(autouse=True)
def wide_screen(monkeypatch) -> None:
    """The offscreen platform's screen is 800×800: presentation mode would take its smallest
    font scale for it. The tests judge the window at the sizes they set, on a 1920-pixel screen
    unless they say otherwise."""
    monkeypatch.setattr(MainWindow, "_screen_width", lambda self: 1920)


def make_window(qtbot, settings_dir: Path) -> MainWindow:
    window = MainWindow(st.make_settings())
    qtbot.addWidget(window)
    window.resize(1400, 900)
    window.show()
    return window


@pytest.fixture
def window(qtbot, settings_dir: Path, hooks: SimpleNamespace) -> MainWindow:
    """The main window with the digits demo loaded and analysed."""
    w = make_window(qtbot, settings_dir)
    w.controls.samples.setValue(128)
    with qtbot.waitSignal(w.ready, timeout=LOAD_TIMEOUT_MS):
        w.start(demo="digits_mlp")
    assert not hooks.errors, hooks.errors
    return w


def state_snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def shown_layer_table(qtbot, rows, sparsity: float, label: str, width: int, height: int):
    """A LayerTable alone, on screen, with ``rows`` and every row's *After* at ``sparsity``."""
    from gui.layer_table import LayerTable

    table = LayerTable()
    qtbot.addWidget(table)
    table.source.set_rows(rows)
    table.source.set_after({r.key: sparsity for r in rows}, label)
    table.resize(width, height)
    table.show()
    qtbot.waitExposed(table)
    return table


def drop_file(window: MainWindow, path: Path) -> None:
    """Simulate dropping a file from a file manager onto the window."""
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDragEnterEvent, QDropEvent

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    enter = QDragEnterEvent(window.rect().center(), Qt.DropAction.CopyAction, mime,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    window.dragEnterEvent(enter)
    assert enter.isAccepted()
    drop = QDropEvent(QPointF(window.rect().center()), Qt.DropAction.CopyAction, mime,
                      Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    window.dropEvent(drop)


def run_and_wait(qtbot, window: MainWindow, method: str, sparsity_percent: int) -> RunOutcome:
    window.controls.set_method(method)
    window.controls.slider.setValue(sparsity_percent)
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as blocker:
        window.act_run.trigger()
    return blocker.args[0]


# ------------------------------------------------------------------------------------------------


def test_demo_loads_and_layer_selection_fills_plots(qtbot, window: MainWindow, hooks) -> None:
    rows = window.table.source.rows()
    prunable = [r.key for r in rows if r.prunable]
    assert prunable, "the demo has prunable layers"
    assert window.table.proxy.rowCount() == len(prunable)  # "prunable only" filter is on
    assert window.preview_panel.dense_acc.text().endswith("%")
    for key in (prunable[-1], prunable[0]):
        window.table.select_key(key)
        assert window.layer_title.text() == key
        x, y = window.weight_hist.all_item.getData()
        assert y is not None and np.sum(y) > 0
        assert window.importance_hist.kept_item is not None
        assert window.heatmap.image.image is not None
        assert window.heatmap.image.image.shape[0] == window._weights[key].shape[0]
        assert window.heatmap.axis_label("bottom") == "input"  # Linear
    assert window.overview.boxes is not None
    # weights no calibration gradient touches (the digits' blank border pixels feed fc1) are
    # counted where they are drawn, at the histogram's left edge
    first = prunable[0]
    window.table.select_key(first)
    zeros = int((window.saliency[first] <= 0).sum())
    assert zeros > 0 and window.importance_hist.zero_note is not None
    assert window.importance_hist.zero_note.toPlainText() == f"← {zeros:,} with zero saliency"
    assert not hooks.errors


def test_holding_an_arrow_key_in_the_layer_table_draws_the_last_row_reached(qtbot, window: MainWindow,
                                                                           monkeypatch) -> None:
    """A key press draws the chosen layer at once; a held arrow key's repeats (each a large
    layer's 0.1-0.2 s redraw on ResNet-50) move the row and draw only where it stops."""
    from PySide6.QtCore import QEvent
    from PySide6.QtGui import QKeyEvent
    from PySide6.QtWidgets import QApplication

    keys = [r.key for r in window.table.source.rows() if r.prunable]
    window.table.select_key(keys[0])
    drawn = []
    own = window._render_layer
    monkeypatch.setattr(window, "_render_layer", lambda: drawn.append(window.table.current_key()) or own())

    def press(repeat: bool) -> None:
        QApplication.sendEvent(window.table, QKeyEvent(QEvent.Type.KeyPress, Qt.Key.Key_Down,
                                                       Qt.KeyboardModifier.NoModifier, "", repeat))

    press(False)
    assert drawn == [keys[1]] and window.layer_title.text() == keys[1]  # at once
    press(True)  # held down: the row moves, the plots wait for the repeats to stop
    assert window.table.current_key() == keys[2] and drawn == [keys[1]]
    qtbot.waitUntil(lambda: drawn == [keys[1], keys[2]])
    assert window.layer_title.text() == keys[2] and window.overview.selected == keys[2]
    assert not window.table.repeating


def test_slider_updates_magnitude_preview(qtbot, window: MainWindow) -> None:
    window.controls.autorun.setChecked(False)
    with qtbot.waitSignal(window.preview_updated, timeout=30_000):
        window.controls.slider.setValue(30)
    assert window.preview is not None
    assert window.preview.result.request.method == "magnitude"
    assert abs(window.preview.result.sparsity - 0.30) < 0.01
    assert "95% interval" in window.preview_panel.delta.toolTip()
    assert window.preview_panel.versus_text() == ""  # magnitude is not compared with itself
    key = window.table.current_key()
    assert window.table.source.after(key) is not None
    assert "30%" in window.preview_panel.after_title.text()
    assert window.weight_hist.threshold is not None and window.weight_hist.threshold > 0
    # keyboard shortcut nudges the sparsity by one percent
    with qtbot.waitSignal(window.preview_updated, timeout=30_000):
        window.controls.step_sparsity(1)
    assert window.controls.slider.value() == 31
    assert abs(window.preview.result.sparsity - 0.31) < 0.01


def test_run_chita_shows_after_accuracy(qtbot, window: MainWindow, hooks) -> None:
    before = state_snapshot(window.session.loaded.model)
    outcome = run_and_wait(qtbot, window, "chita", 50)
    assert outcome.result.request.method == "chita"
    assert abs(outcome.result.sparsity - 0.5) < 0.01
    text = window.preview_panel.after_text()
    assert text.endswith("%") and text != "–"
    assert "CHITA" in window.preview_panel.after_title.text()
    assert "CHITA" in window.table.source.after_label
    # the caption certifies the mask against the floor the run reports
    final = outcome.result.info["final"][-1]
    gap = (final["objective"] - final["objective_lower_bound"]) / final["objective"]
    assert 0 <= gap < 1
    assert (f"no mask of this size beats this one by more than {100 * gap:.2g}%"
            in window.preview_panel.caption.text())
    assert len(window.sparsity_bars.bars) == 2  # the method beside magnitude
    assert window.export_button.isEnabled()
    # the change against dense and against magnitude, each paired on the same images
    panel = window.preview_panel
    dense = window.baseline.eval
    change = paired_difference(outcome.eval, dense)
    assert f"{100 * change.difference:+.1f} points" in panel.delta.text()
    assert f"[{100 * change.ci[0]:+.1f}, {100 * change.ci[1]:+.1f}]" in panel.delta.text()
    assert f"{change.b_only:,} only with the dense model" in panel.delta.toolTip()
    versus = paired_difference(outcome.eval, outcome.magnitude_eval)
    assert panel.versus_text() == (f"vs magnitude: {100 * versus.difference:+.1f} points "
                                   f"[{100 * versus.ci[0]:+.1f}, {100 * versus.ci[1]:+.1f}]")
    assert f"{versus.b_only:,} only with magnitude" in panel.versus.toolTip()
    # the changes sit right under the accuracies, above the size rows the sidebar may scroll away
    qtbot.wait(20)
    ys = [w.mapTo(panel, w.rect().topLeft()).y() for w in
          (panel.after_ci, panel.delta, panel.versus, panel.cells["onnx"][1], panel.cells["time"][1])]
    assert ys == sorted(ys) and len(set(ys)) == len(ys), ys
    after = state_snapshot(window.session.loaded.model)
    assert all(torch.equal(before[k], after[k]) for k in before), "the loaded model must not change"
    assert not hooks.errors


def test_objective_tab_plots_the_mask_search_against_magnitude_and_the_floor(qtbot, window: MainWindow,
                                                                             hooks) -> None:
    """CHITA: one point per verified refresh, from the magnitude mask (0%) down, never below the
    floor; CHITA++: one point per stage; magnitude: a message, no curve."""
    from gui.plots import objective_series

    plot = window.objective_plot
    outcome = run_and_wait(qtbot, window, "chita", 90)
    final = outcome.result.info["final"][-1]
    s = plot.series
    assert s["kind"] == "trace" and s["y"][0] == pytest.approx(0.0)  # the search starts on magnitude
    assert all(b <= a + 1e-9 for a, b in zip(s["y"], s["y"][1:]))  # verified refreshes only descend
    assert s["y"][-1] == pytest.approx(100 * (final["objective"] / final["magnitude_objective"] - 1))
    assert s["floor"] <= s["y"][-1] < 0 and s["iterations"] == final["iterations"]
    assert plot._message.isHidden() and "90%" in plot.title
    outcome = run_and_wait(qtbot, window, "chita++", 90)
    s = plot.series
    stages = outcome.result.info["final"]
    assert s["kind"] == "stages" and len(s["y"]) == len(stages) > 1
    assert all(f <= y <= 1e-9 for f, y in zip(s["floor"], s["y"]))
    assert s["sparsities"][-1] == pytest.approx(0.9, abs=1e-3)
    # the zero line's label and the legend sit in the room kept above the curve, at any height
    import pyqtgraph as pg
    window.overview_tabs.setCurrentWidget(plot)
    vb = plot.getPlotItem().getViewBox()
    zero = next(i for i in plot.getPlotItem().items if isinstance(i, pg.InfiniteLine) and i.value() == 0)
    legend = plot.getPlotItem().legend

    def label_clear() -> bool:
        drawn = vb.mapRectFromItem(zero.label, zero.label.boundingRect())
        shown_legend = vb.mapRectFromItem(legend, legend.boundingRect()) if legend.isVisible() else None
        return (drawn.top() >= 0 and zero.label.isVisible()
                and (shown_legend is None or shown_legend.bottom() <= drawn.top() + 2))

    qtbot.waitUntil(label_clear)
    run_and_wait(qtbot, window, "magnitude", 90)
    assert plot.series is None and not plot._message.isHidden()
    assert "no mask search" in plot._message.text()
    assert objective_series(object()) is None
    assert not hooks.errors


def test_runs_tab_keeps_earlier_runs_to_show_and_export_again(qtbot, window: MainWindow, hooks,
                                                              tmp_path: Path, monkeypatch) -> None:
    """Each finished run joins the Runs tab (newest first); showing an earlier one puts it back in
    the sidebar, the controls, Export and Save report; new data clears the list."""
    first = run_and_wait(qtbot, window, "chita", 60)
    second = run_and_wait(qtbot, window, "magnitude", 85)
    view = window.runs_view
    assert window.runs == [first, second] and view.table.rowCount() == 2
    assert view.table.item(0, 1).text() == "Magnitude (global)" and view.table.item(1, 2).text() == "60%"
    assert view.table.item(0, 0).font().bold() and not view.table.item(1, 0).font().bold()
    assert view.table.item(1, 3).text() == f"{100 * first.eval.accuracy:.1f}%"
    view.table.selectRow(1)  # the CHITA run
    assert view.selected() == 0 and view.show_button.isEnabled()
    # every run against the chosen one, paired on the same images
    d = paired_difference(second.eval, first.eval)
    assert view.table.horizontalHeaderItem(7).text() == "vs run 1, points"
    assert view.table.item(0, 7).text() == \
        f"{100 * d.difference:+.1f} ({100 * d.ci[0]:+.1f} to {100 * d.ci[1]:+.1f})"
    assert view.table.item(1, 7).text() == "—"
    # the class that lost most against dense, as core.class_accuracy finds it on the same images
    from core.class_accuracy import called, class_scores, most_changed
    worst = most_changed(class_scores(second.eval, window.bundle.evaluation.y, reference=window.baseline.eval), 1)
    assert view.table.item(0, 6).text().startswith(f"{called(worst[0])} {100 * worst[0].change.difference:+.1f}")
    assert view.table.item(0, 6).toolTip().startswith("Largest losses: ")
    window.tabs.setCurrentWidget(view)
    view.table.setFocus()
    with qtbot.waitSignal(window.run_shown, timeout=5000) as shown:
        qtbot.keyClick(view.table, Qt.Key.Key_Return)  # Enter, as Show run
    assert shown.args[0] is first and window.outcome is first
    with qtbot.waitSignal(window.run_shown, timeout=5000) as shown:
        view.show_button.click()
    assert shown.args[0] is first and window.outcome is first
    assert window.controls.method_name() == "chita" and window.controls.sparsity() == pytest.approx(0.6)
    assert window.preview_panel.after_text() == f"{100 * first.eval.accuracy:.1f}%"
    assert "CHITA" in window.preview_panel.after_title.text()
    assert view.table.item(1, 0).font().bold() and view.selected() == 0  # still the chosen one
    with qtbot.waitSignal(window.export_finished, timeout=RUN_TIMEOUT_MS) as exported:
        window.export_to(str(tmp_path / "first.onnx"))
    assert exported.args[0].path.endswith("first.onnx")
    zeros = window.last_export.zero_fractions  # the export is the CHITA run at 60%, not the last run
    assert zeros and all(a == pytest.approx(first.result.layer_sparsity[k], abs=1e-6) for k, (a, _) in zeros.items())
    assert any(abs(a - second.result.layer_sparsity[k]) > 0.05 for k, (a, _) in zeros.items())
    # Save report… on the other run shows it and writes its report (without the first run's file)
    view.table.selectRow(0)  # the magnitude run, newest first
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (str(tmp_path / "second.md"), "")))
    view.report_button.click()
    assert window.outcome is second and "## ONNX file" not in (tmp_path / "second.md").read_text()
    assert "Magnitude" in (tmp_path / "second.md").read_text()
    view.table.selectRow(1)  # the CHITA run: its report names the file exported from it
    view.report_button.click()
    assert window.outcome is first and "first.onnx" in (tmp_path / "second.md").read_text()
    view.clear_button.click()  # keeps the run shown now
    assert window.runs == [first] and view.table.rowCount() == 1
    window._set_bundle(window.bundle)
    assert window.runs == [] and view.table.rowCount() == 0
    assert not hooks.errors


def test_a_narrow_runs_table_hides_its_least_needed_columns_instead_of_scrolling(
        qtbot, window: MainWindow, hooks) -> None:
    """The Runs table's eleven columns scrolled sideways below 1,600 px (λ, Seconds and Settings
    out of view on a 1366×768 laptop). Where the window is narrow it hides Seconds, λ, the
    worst class, Settings, "vs chosen" (first where empty) and, last, the accuracy's interval,
    in that order; a row's tooltip gives the
    hidden cells, the header's menu shows any column by hand, and a wide window shows them all."""
    from gui.runs_view import COLUMNS

    run_and_wait(qtbot, window, "chita", 60)
    run_and_wait(qtbot, window, "magnitude", 85)
    view = window.runs_view
    table = view.table
    window.tabs.setCurrentWidget(view)
    col = {name: COLUMNS.index(name) for name in COLUMNS}
    window.resize(1024, 768)
    qtbot.waitUntil(lambda: table.horizontalScrollBar().maximum() == 0 and table.isColumnHidden(col["Seconds"]))
    for name in ("#", "Method", "Sparsity", "Accuracy", "vs dense, points"):
        assert not table.isColumnHidden(col[name]), name
    assert table.isColumnHidden(col["λ"]) and table.isColumnHidden(col["vs chosen, points"])  # empty: first
    shown = sum(table.columnWidth(c) for c in range(len(COLUMNS)) if not table.isColumnHidden(c))
    assert shown <= table.viewport().width()
    hidden_text = view.columns.hidden_text(1)  # the CHITA run (newest first)
    assert f"Seconds: {table.item(1, col['Seconds']).text()}" in hidden_text
    assert f"λ: {table.item(1, col['λ']).text()}" in hidden_text
    from PySide6.QtCore import QEvent
    from PySide6.QtGui import QHelpEvent
    from PySide6.QtWidgets import QApplication, QToolTip

    rect = table.visualRect(table.model().index(1, col["Method"]))
    at = rect.center()
    QApplication.sendEvent(table.viewport(), QHelpEvent(QEvent.Type.ToolTip, at,
                                                        table.viewport().mapToGlobal(at)))
    assert QToolTip.text().endswith(f"Not shown for want of room: {hidden_text}")
    assert "Seconds" in table.horizontalHeader().toolTip()
    menu = dict((text, (checked, do)) for text, checked, do in view.columns.menu_actions())
    assert menu["Seconds"][0] is False and "Accuracy" not in menu  # the kept columns are not offered
    menu["Seconds"][1]()  # shown by hand: it stays, the table scrolls if it must
    assert not table.isColumnHidden(col["Seconds"])
    window.resize(1000, 768)
    qtbot.wait(50)
    assert not table.isColumnHidden(col["Seconds"])
    window.save_settings()  # remembered for the next session
    from gui import settings as st
    assert st.read(window.settings, "runs/columns", [], list) == ["Seconds=1"]
    view.columns.restore_choices(["λ=1", "Accuracy=0", "nonsense"])  # only the optional columns
    assert view.columns.by_hand == {col["λ"]: True} and not table.isColumnHidden(col["Accuracy"])
    view.columns.restore_choices(["Seconds=1"])
    assert not table.isColumnHidden(col["Seconds"])
    view.columns.reset()
    assert table.isColumnHidden(col["Seconds"])
    window.resize(1900, 1000)  # wide: every column but the empty one where it is tight
    qtbot.waitUntil(lambda: not table.isColumnHidden(col["Seconds"]) and not table.isColumnHidden(col["Settings"]))
    assert not view.columns.hidden_for_room or view.columns.hidden_for_room == (col["vs chosen, points"],)
    assert not hooks.errors


def test_column_fitter_keeps_a_table_in_its_width_when_its_last_column_narrows(qtbot) -> None:
    """Qt keeps a stretched last column at least as wide as it once was: after a long (bold) text
    left it, the Runs table scrolled sideways by the difference. The fitter sizes every column to
    its contents before it judges."""
    from PySide6.QtWidgets import QHeaderView, QTableWidget, QTableWidgetItem

    from gui.table_columns import ColumnFitter

    table = QTableWidget(2, 4)
    qtbot.addWidget(table)
    table.verticalHeader().setVisible(False)  # as the app's tables
    table.setHorizontalHeaderLabels(["A", "B", "C", "D"])
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.horizontalHeader().setStretchLastSection(True)
    for r in range(2):
        for c in range(4):
            table.setItem(r, c, QTableWidgetItem(f"cell {r} {c} " * (2 if c != 3 else 1)))
    long = "a long setting · from the sweep · and more"
    table.item(0, 3).setText(long)
    fitter = ColumnFitter(table, (1,))
    table.resize(900, 200)
    table.show()
    qtbot.waitExposed(table)
    fitter.fit()
    table.item(0, 3).setText("short")  # the long text is gone
    wide = fitter.widths()
    width = sum(wide) - wide[1] + 2 * table.frameWidth() + 4  # room for all but column 1
    table.resize(width, 200)
    qtbot.waitUntil(lambda: table.isColumnHidden(1))
    fitter.fit()
    assert table.horizontalHeader().length() <= table.viewport().width()
    qtbot.waitUntil(lambda: table.horizontalScrollBar().maximum() == 0)  # its range follows later
    assert fitter.hidden_text(0) == "B: cell 0 1 cell 0 1 "


def test_runs_tab_saves_its_runs_as_csv(qtbot, window: MainWindow, hooks, tmp_path: Path) -> None:
    import csv

    from core.class_accuracy import class_scores

    first = run_and_wait(qtbot, window, "chita", 70)
    second = run_and_wait(qtbot, window, "magnitude", 70)
    view = window.runs_view
    assert view.save_csv.isEnabled()
    path = view.save_csv_file(str(tmp_path / "runs.csv"))
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["run"], r["method"], float(r["sparsity"])) for r in rows] == [("1", "chita", 0.7), ("2", "magnitude", 0.7)]
    dense = window.baseline.eval
    for row, outcome in zip(rows, (first, second)):
        assert float(row["accuracy"]) == outcome.eval.accuracy and int(row["nonzeros"]) == outcome.result.nonzeros
        d = paired_difference(outcome.eval, dense)
        assert (float(row["change_vs_dense"]), float(row["change_lo"]), float(row["change_hi"])) == (d.difference, *d.ci)
        assert int(row["compressed_bytes"]) == outcome.compressed_bytes
        assert int(row["sparse_onnx_bytes"]) == outcome.sparse_bytes
        assert row["sparse_compressed_bytes"] == ("" if outcome.sparse_compressed_bytes is None
                                                  else str(outcome.sparse_compressed_bytes))
        assert row["float16_weights"] == "0"  # the sizes are the float32 files'
        worst = min(class_scores(outcome.eval, window.bundle.evaluation.y, reference=dense),
                    key=lambda c: (c.change.difference, c.label))
        assert (row["worst_class"], float(row["worst_class_change"])) == (worst.name, worst.change.difference)
    m = paired_difference(first.eval, first.magnitude_eval)
    assert float(rows[0]["change_vs_magnitude"]) == m.difference and float(rows[0]["lambda"]) == first.result.lam
    assert rows[1]["change_vs_magnitude"] == "" and rows[1]["lambda"] == ""  # magnitude itself
    assert "128 samples" in rows[0]["settings"] and f"Saved {path}" == view.status.text()
    window.clear_runs()
    window._set_bundle(window.bundle)
    assert not view.save_csv.isEnabled() and view.save_csv_file(str(tmp_path / "none.csv")) is None
    assert not hooks.errors


def test_runs_come_back_in_the_next_session_for_the_same_model_and_data(qtbot, settings_dir: Path, hooks,
                                                                       tmp_path: Path) -> None:
    """Closing saves the Runs tab; a new window on the same weights and images gets the runs back
    (accuracy, λ, comparisons, export), a window on another model does not."""
    from gui import runs_store

    first = make_window(qtbot, settings_dir)
    first.controls.samples.setValue(128)
    with qtbot.waitSignal(first.runs_restored, timeout=LOAD_TIMEOUT_MS) as none:
        first.start(demo="digits_mlp")
    assert none.args[0] == 0
    chita = run_and_wait(qtbot, first, "chita", 85)
    mag = run_and_wait(qtbot, first, "magnitude", 60)
    first.set_float16_weights(True)  # the shown run (magnitude) is measured again with float16 weights
    qtbot.waitUntil(lambda: first.outcome.sizes_float16, timeout=RUN_TIMEOUT_MS)
    first.close()
    files = list(runs_store.runs_folder(first.settings).glob("*.pt"))
    assert len(files) == 1

    second = make_window(qtbot, settings_dir)
    with qtbot.waitSignal(second.runs_restored, timeout=LOAD_TIMEOUT_MS) as restored:
        second.start(demo="digits_mlp")
    assert restored.args[0] == 2 and len(second.runs) == 2
    back = second.runs[0]
    assert back.result.request == chita.result.request and back.result.lam == chita.result.lam
    assert back.eval.accuracy == chita.eval.accuracy and back.magnitude_eval.accuracy == chita.magnitude_eval.accuracy
    assert back.sparse_bytes == chita.sparse_bytes is not None
    assert back.sparse_compressed_bytes == chita.sparse_compressed_bytes
    assert second.runs[1].eval.accuracy == mag.eval.accuracy
    assert not back.sizes_float16 and second.runs[1].sizes_float16  # each run keeps which sizes it holds
    assert second.runs[1].onnx_bytes < 0.6 * mag.onnx_bytes
    assert "Restored 2 runs" in second.statusBar().currentMessage()
    assert second.runs_view.table.rowCount() == 2 and all(r.restored for r in second.runs)
    assert second.runs_view.table.item(1, 10).text().endswith("earlier session")  # Settings; run 1 is the older
    second.show_run(0)
    assert second.preview_panel.after_text() == f"{100 * chita.eval.accuracy:.1f}%"
    assert second.preview_panel.versus_text().startswith("vs magnitude: ")
    with qtbot.waitSignal(second.export_finished, timeout=RUN_TIMEOUT_MS):
        second.export_to(str(tmp_path / "restored.onnx"))
    zeros = second.last_export.zero_fractions
    assert zeros and all(a == pytest.approx(chita.result.layer_sparsity[k], abs=1e-6) for k, (a, _) in zeros.items())
    # another model: its own (empty) list; the demo's runs stay on disk for it
    with qtbot.waitSignal(second.runs_restored, timeout=LOAD_TIMEOUT_MS) as other:
        second.load_demo("digits_cnn")
    assert other.args[0] == 0 and second.runs == []
    assert len(list(runs_store.runs_folder(second.settings).glob("*.pt"))) == 1
    second.close()
    assert not hooks.errors


def test_switching_models_saves_the_runs_in_the_background_and_close_waits_for_it(
        qtbot, settings_dir: Path, hooks, monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow save (a large model's runs take seconds to write) neither freezes the switch to
    another model nor is lost: the same model reopened finds its runs, and closing the window
    while a save is still running waits for it."""
    import threading
    import time as _time

    from gui import runs_store

    real_save = runs_store.save_runs
    saving_threads: list[threading.Thread] = []

    def slow_save(folder, key, runs):
        saving_threads.append(threading.current_thread())
        _time.sleep(1.5)
        return real_save(folder, key, runs)

    monkeypatch.setattr(runs_store, "save_runs", slow_save)
    w = make_window(qtbot, settings_dir)
    w.controls.samples.setValue(128)
    with qtbot.waitSignal(w.runs_restored, timeout=LOAD_TIMEOUT_MS):
        w.start(demo="digits_mlp")
    run_and_wait(qtbot, w, "magnitude", 60)
    folder = runs_store.runs_folder(w.settings)
    t0 = _time.perf_counter()
    with qtbot.waitSignal(w.runs_restored, timeout=LOAD_TIMEOUT_MS) as restored:
        w._set_bundle(w.bundle)  # what opening other data does first: the runs are saved, the view cleared
        assert _time.perf_counter() - t0 < 1.0 and w.runs == []  # the 1.5 s save runs elsewhere
    # the same weights and images again: their restore runs after the save, on the same lane
    assert restored.args[0] == 1 and len(w.runs) == 1
    assert saving_threads and all(t is not threading.main_thread() for t in saving_threads)
    # a save still running when the window closes is finished, not dropped
    w._set_bundle(w.bundle)
    for f in folder.glob("*.pt"):
        f.unlink()
    w.close()
    assert len(list(folder.glob("*.pt"))) == 1
    assert not hooks.errors

def test_runs_kept_are_the_most_recent_within_both_limits() -> None:
    from gui.runs_view import keep_recent, result_bytes

    def run(n_floats: int) -> SimpleNamespace:
        w = torch.zeros(n_floats)
        return SimpleNamespace(result=SimpleNamespace(weights={"w": w}, masks={"w": w > 0}))

    runs = [run(1000) for _ in range(5)]
    assert result_bytes(runs[0].result) == 1000 * 4 + 1000
    assert keep_recent(runs, max_runs=3) == runs[2:]
    assert keep_recent(runs, max_bytes=2 * 5000) == runs[3:]
    big = run(10**6)
    assert keep_recent([*runs, big], max_bytes=100) == [big]  # the newest stays, whatever its size


def test_objective_tab_draws_chitapp_stages_while_the_run_goes(qtbot, window: MainWindow, hooks,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    plot = window.objective_plot
    seen = []
    real = plot.add_stage

    def spy(record) -> None:
        real(record)
        seen.append((len(plot.series["y"]), plot.series["stages"], window.outcome))

    monkeypatch.setattr(plot, "add_stage", spy)
    before = window.outcome
    window.controls.stages.setValue(6)
    outcome = run_and_wait(qtbot, window, "chita++", 90)
    assert [n for n, _, _ in seen] == [1, 2, 3, 4, 5, 6] and {t for _, t, _ in seen} == {6}
    assert all(o is before for _, _, o in seen)  # drawn before the run finished
    assert plot.live is None and plot.series["y"] == pytest.approx(
        [100 * (f["objective"] / f["magnitude_objective"] - 1) for f in outcome.result.info["final"]])
    # a cancelled CHITA++ run: the tab goes back to the run shown
    window.controls.set_method("chita++")
    with qtbot.waitSignal(window.run_cancelled, timeout=RUN_TIMEOUT_MS):
        window.run_pruning()
        window.cancel_foreground()
    assert plot.live is None and len(plot.series["y"]) == 6
    # a CHITA++ run replaced by a CHITA run: the tab leaves the live drawing at once, and shows
    # the CHITA run when it is done
    window.controls.set_method("chita++")
    window.run_pruning()
    assert plot.live == []
    outcome = run_and_wait(qtbot, window, "chita", 80)
    assert plot.live is None and plot.series["kind"] == "trace"
    assert window._live_run is None
    assert not hooks.errors


def test_second_chita_run_reuses_the_gradients_of_the_first(qtbot, window: MainWindow, hooks) -> None:
    """Runs at other sparsities on the same model and data skip the gradient pass; new data drops G."""
    first = run_and_wait(qtbot, window, "chita", 60)
    second = run_and_wait(qtbot, window, "chita", 80)
    assert "gradients" in first.result.timings or first.result.info.get("gradients_reused")
    assert second.result.info.get("gradients_reused") is True
    assert "gradients" not in second.result.timings
    assert window.gradient_cache._entry is not None
    window._set_bundle(window.bundle)  # a data change (here: the same data loaded again)
    assert window.gradient_cache._entry is None
    assert not hooks.errors


def test_refinement_runs_from_the_controls_and_is_reported(qtbot, window: MainWindow, hooks) -> None:
    before = state_snapshot(window.session.loaded.model)
    window.controls.refine.setValue(2)
    try:
        outcome = run_and_wait(qtbot, window, "magnitude", 90)
    finally:
        window.controls.refine.setValue(0)
    assert outcome.result.request.refine_steps == 2
    steps = outcome.result.info["refinement"]
    assert steps and steps[0]["accepted"]
    rows = outcome.result.info["samples"] * outcome.result.info["refine_images_per_row"]
    assert rows > outcome.result.info["samples"]  # every calibration image but the held-out ones
    assert f"taken (gradients from {rows:,} images)" in window.preview_panel.caption.text()
    after = state_snapshot(window.session.loaded.model)
    assert all(torch.equal(before[k], after[k]) for k in before), "the loaded model must not change"
    assert not hooks.errors


def test_closing_drops_a_preview_the_slider_scheduled(qtbot, window: MainWindow) -> None:
    """A slider move schedules a magnitude preview 150 ms later; closing the window in between
    must not start it (it would run after the runner's shutdown, on objects being deleted)."""
    started = []
    window.runner.task_started.connect(started.append)
    window.controls.step_sparsity(+3)
    assert window.controls._debounce.isActive()
    window.close()
    qtbot.wait(400)
    assert started == [] and window.runner.tasks == []


def test_cancel_leaves_model_unchanged(qtbot, window: MainWindow) -> None:
    before = state_snapshot(window.session.loaded.model)
    window.controls.set_method("chita")
    with qtbot.waitSignal(window.run_cancelled, timeout=RUN_TIMEOUT_MS):
        window.act_run.trigger()
        window.act_cancel.trigger()
    assert window.outcome is None
    after = state_snapshot(window.session.loaded.model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    qtbot.waitUntil(lambda: not window.runner.running(foreground=True), timeout=30_000)
    assert not window.status_cancel.isEnabled()


def test_export_loads_in_onnxruntime(qtbot, window: MainWindow, hooks, tmp_path: Path, monkeypatch) -> None:
    import onnxruntime as ort

    from core.pruning import apply_result

    outcome = run_and_wait(qtbot, window, "magnitude", 60)
    target = tmp_path / "pruned.onnx"
    offered = []
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: offered.append(a[2]) or (str(target), "")))
    with qtbot.waitSignal(window.export_finished, timeout=RUN_TIMEOUT_MS) as blocker:
        window.act_export.trigger()
    assert Path(offered[0]).name == "digits_mlp_magnitude_60.onnx"  # model, method, sparsity
    report = blocker.args[0]
    assert target.exists() and report.onnx_bytes == target.stat().st_size
    assert any(title == "Export finished" for title, _ in hooks.infos)
    assert any(f"input input batch×1×8×8 → output, opset {report.opset}" in text
               for title, text in hooks.infos if title == "Export finished")
    # scored in onnxruntime on the evaluation images, against the run's own evaluation
    assert report.reference_eval is outcome.eval and report.onnx_eval.accuracy == outcome.eval.accuracy
    assert report.scored_differently == 0
    assert "Accuracy of the file" in hooks.infos[-1][1] and "no image scored differently" in hooks.infos[-1][1]
    x = window.bundle.evaluation.x[:8]
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        want = apply_result(window.session.loaded.model, outcome.result)(x).numpy()
    assert np.max(np.abs(got - want)) < 1e-3
    assert not hooks.errors


def test_sparse_storage_setting_reaches_preview_export_and_next_session(qtbot, window: MainWindow, hooks,
                                                                        settings_dir: Path, tmp_path: Path,
                                                                        monkeypatch) -> None:
    """File ▸ Sparse storage in ONNX files: the preview's ONNX size becomes the sparse-storage
    file's, the export writes sparse initializers of that very size, and the choice is remembered."""
    import onnx
    import onnxruntime as ort

    from gui.preview import fmt_bytes

    outcome = run_and_wait(qtbot, window, "magnitude", 90)
    panel = window.preview_panel
    assert outcome.sparse_bytes is not None and outcome.sparse_bytes < 0.5 * outcome.onnx_bytes
    assert outcome.sparse_compressed_bytes is None  # not deflated while the setting is off
    assert not window.act_sparse.isChecked()
    assert panel.cells["onnx"][1].text() == fmt_bytes(outcome.onnx_bytes)
    window.act_sparse.trigger()  # measures the shown run's sparse file deflated, in the background
    assert panel.names["onnx"].text() == "ONNX size (sparse)"
    qtbot.waitUntil(lambda: window.outcome.sparse_compressed_bytes is not None, timeout=RUN_TIMEOUT_MS)
    assert window.outcome.result is outcome.result and window.runs[-1] is window.outcome
    outcome = window.outcome
    assert panel.cells["onnx"][1].text() == fmt_bytes(outcome.sparse_bytes)
    assert panel.cells["deflate"][1].text() == fmt_bytes(outcome.sparse_compressed_bytes)
    assert panel.cells["onnx"][0].text() == fmt_bytes(window.baseline.sparse_bytes)
    assert fmt_bytes(outcome.onnx_bytes) in panel.cells["onnx"][1].toolTip()

    target = tmp_path / "sparse.onnx"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(target), "")))
    with qtbot.waitSignal(window.export_finished, timeout=RUN_TIMEOUT_MS) as blocker:
        window.act_export.trigger()
    report = blocker.args[0]
    assert report.sparse and report.sparse_tensors == 3
    assert target.stat().st_size == report.onnx_bytes == outcome.sparse_bytes  # the preview told the truth
    assert report.compressed_bytes == outcome.sparse_compressed_bytes
    assert len(onnx.load(str(target)).graph.sparse_initializer) == 3
    assert any("sparse: 3 weight tensors" in text for title, text in hooks.infos if title == "Export finished")
    x = window.bundle.evaluation.x.numpy()
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    acc = (session.run(None, {session.get_inputs()[0].name: x})[0].argmax(1) == window.bundle.evaluation.y.numpy())
    assert acc.mean() == pytest.approx(outcome.eval.accuracy, abs=1e-9)

    second = run_and_wait(qtbot, window, "magnitude", 95)  # with the setting on, the run deflates it itself
    assert second.sparse_compressed_bytes is not None and second.sparse_compressed_bytes != second.compressed_bytes

    window.save_settings()
    again = make_window(qtbot, settings_dir)
    assert again.act_sparse.isChecked()
    assert again.preview_panel.names["onnx"].text() == "ONNX size (sparse)"
    assert not hooks.errors


def test_float16_weights_setting_reaches_preview_export_and_next_session(qtbot, window: MainWindow, hooks,
                                                                          settings_dir: Path, tmp_path: Path,
                                                                          monkeypatch) -> None:
    """File ▸ Float16 weights in ONNX files: the dense and the shown run's ONNX sizes are measured
    again with float16 weights (about half), the export writes float16 weights of that very size
    and scores the file in onnxruntime, runs record which sizes they hold, and the choice is
    remembered."""
    import onnx

    from gui.preview import fmt_bytes

    outcome = run_and_wait(qtbot, window, "magnitude", 70)
    panel = window.preview_panel
    dense32 = window.baseline.onnx_bytes
    assert not outcome.sizes_float16 and not window.act_float16.isChecked()
    window.act_float16.trigger()  # both columns measured again, in the background
    assert panel.names["onnx"].text() == "ONNX size (float16)"
    qtbot.waitUntil(lambda: window.outcome.sizes_float16 and window.baseline.sizes_float16, timeout=RUN_TIMEOUT_MS)
    outcome = window.outcome
    assert window.runs[-1] is outcome and window.baseline.eval is not None
    assert 0.45 * dense32 < window.baseline.onnx_bytes < 0.6 * dense32
    assert panel.cells["onnx"][1].text() == fmt_bytes(outcome.onnx_bytes)
    assert panel.cells["onnx"][0].text() == fmt_bytes(window.baseline.onnx_bytes)
    assert "float16" in panel.cells["onnx"][1].toolTip()

    target = tmp_path / "half.onnx"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(target), "")))
    with qtbot.waitSignal(window.export_finished, timeout=RUN_TIMEOUT_MS) as blocker:
        window.act_export.trigger()
    report = blocker.args[0]
    assert report.float16_tensors == 3 and not report.sparse
    assert target.stat().st_size == report.onnx_bytes == outcome.onnx_bytes  # the preview told the truth
    assert report.compressed_bytes == outcome.compressed_bytes
    halves = [t for t in onnx.load(str(target)).graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    assert len(halves) == 3 and report.onnx_eval is not None and report.scored_differently <= 2
    assert any("3 weight tensors in float16" in text and "Dense model (float16 weights), compressed" in text
               for title, text in hooks.infos if title == "Export finished")

    window.act_float16.trigger()  # off again: float32 sizes come back
    assert panel.names["onnx"].text() == "ONNX size"
    qtbot.waitUntil(lambda: not window.outcome.sizes_float16 and not window.baseline.sizes_float16,
                    timeout=RUN_TIMEOUT_MS)
    assert window.baseline.onnx_bytes == dense32
    window.act_float16.trigger()
    window.save_settings()
    again = make_window(qtbot, settings_dir)
    assert again.act_float16.isChecked() and again.preview_panel.names["onnx"].text() == "ONNX size (float16)"
    with qtbot.waitSignal(again.ready, timeout=LOAD_TIMEOUT_MS):
        again.start(demo="digits_mlp")
    assert again.baseline.sizes_float16 and again.baseline.onnx_bytes < 0.6 * dense32  # measured so at once
    assert not hooks.errors


def test_keep_dense_boxes_reach_preview_run_sweep_and_next_session(qtbot, window: MainWindow, hooks,
                                                                    settings_dir: Path) -> None:
    """Keep dense ▸ First layer / Last layer: the live preview, the run and the sweep leave those
    layers whole (the budget is the others'), the table says "dense" for them, a run made with
    other boxes is no longer taken for the controls' one, and the boxes are remembered."""
    from gui.layer_table import COL_AFTER

    source = window.table.source
    first, last = window.session.summary.prunable_keys[0], window.session.summary.prunable_keys[-1]
    with qtbot.waitSignal(window.preview_updated, timeout=RUN_TIMEOUT_MS):
        window.controls.keep_last.setChecked(True)
    assert window.preview.result.info["kept_dense"] == [last] and last not in window.preview.result.masks
    outcome = run_and_wait(qtbot, window, "chita", 70)
    assert outcome.result.request.keep_last and outcome.result.info["kept_dense"] == [last]
    assert set(outcome.result.layer_sparsity) == set(window.session.summary.prunable_keys[:-1])
    assert source.data(source.index(source.row_of_key(last), COL_AFTER)) == "dense"
    assert "left dense" in window.preview_panel.caption.text() and window._outcome_current()
    assert window.overview.dense == {last}  # drawn muted in the weight-spread plot
    # the preview's nonzeros and sparsity count the dense layer's weights as kept
    kept = window.session.loaded.model.get_parameter(last).numel()
    cells = window.preview_panel.cells
    assert cells["nonzeros"][1].text() == f"{outcome.result.nonzeros + kept:,} / {outcome.result.total + kept:,}"
    assert "70.0% of the" in cells["sparsity"][1].toolTip()
    window.controls.keep_first.setChecked(True)  # the shown run no longer matches the controls
    assert not window._outcome_current()
    with qtbot.waitSignal(window.sweep_finished, timeout=RUN_TIMEOUT_MS):
        window.run_sweep(["magnitude"], [0.5], 128)
    row = window.sweep_view.point_row("magnitude", 0.5)
    assert set(row.result.masks) == set(window.session.summary.prunable_keys[1:-1])
    assert first in row.result.info["kept_dense"] and window.sweep_view.result.meta["keep_first"]
    window.save_settings()
    again = make_window(qtbot, settings_dir)
    assert again.controls.kept_dense() == (True, True) and again.controls.request().keep_first
    assert not hooks.errors


def test_pattern_box_fixes_the_sparsity_and_reaches_preview_run_and_next_session(
        qtbot, window: MainWindow, hooks, settings_dir: Path) -> None:
    """Pattern ▸ 2:4: the slider shows 50% and is disabled (Scope too), the live preview and the
    run keep 2 of every 4 weights, the caption says so, the run is taken for the controls' one
    only with that pattern, clearing it gives the slider its own value back, and the choice is
    remembered."""
    from core.sparsity_pattern import Pattern, check_pattern

    window.controls.slider.setValue(80)
    with qtbot.waitSignal(window.preview_updated, timeout=RUN_TIMEOUT_MS):
        window.controls.set_pattern("2:4")
    assert window.controls.sparsity() == 0.5 and not window.controls.slider.isEnabled()
    assert not window.controls.scope.isEnabled()
    assert window.preview.result.request.pattern == "2:4" and window.preview.threshold is None
    window.controls.step_sparsity(10)  # Ctrl+PgUp does not move a pattern's sparsity
    assert window.controls.sparsity() == 0.5
    window.controls.set_method("chita")
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as blocker:
        window.act_run.trigger()
    result = blocker.args[0].result
    assert result.request.pattern == "2:4" and result.nonzeros == result.total // 2
    assert set(check_pattern(result.weights, Pattern(2, 4)).values()) == {0}
    assert "2:4 in all" in window.preview_panel.caption.text() and window._outcome_current()
    window.controls.set_pattern("")
    assert window.controls.sparsity() == 0.8 and window.controls.slider.isEnabled()
    assert not window._outcome_current()
    window.controls.set_pattern("1:4")
    assert window.controls.sparsity() == 0.75
    window.controls.set_method("chita++")
    assert window.controls.request().pattern == "1:4" and window.controls.sparsity() == 0.75
    window.save_settings()
    again = make_window(qtbot, settings_dir)
    assert again.controls.pattern_value() == "1:4" and again.controls.sparsity() == 0.75
    again.controls.set_pattern("")
    assert again.controls.sparsity() == 0.8  # the slider's own value was saved, not the pattern's
    assert not hooks.errors


def test_table_context_menu_keeps_chosen_layers_dense(qtbot, window: MainWindow, hooks) -> None:
    """Right-click a layer ▸ Keep this layer dense: the preview, the run and the sweep prune the
    other layers (the request names them), the table says "dense" for it, the run is no longer
    taken for the controls' one once the choice changes, Prune every layer again undoes it, and
    another model starts with every layer."""
    from gui.layer_table import COL_AFTER

    keys = window.session.summary.prunable_keys
    middle = keys[1]
    assert [text for text, _, _ in window.table.context_actions(middle)] == ["Keep this layer dense"]
    with qtbot.waitSignal(window.preview_updated, timeout=RUN_TIMEOUT_MS):
        window.table.context_actions(middle)[0][2]()  # the menu's action
    assert window.kept_layers == {middle} and middle not in window.preview.result.masks
    assert window.table.context_actions(middle)[0][1] is True  # shown checked now
    outcome = run_and_wait(qtbot, window, "chita", 70)
    assert outcome.result.request.layers == tuple(k for k in keys if k != middle)
    assert set(outcome.result.masks) == set(keys) - {middle}
    source = window.table.source
    assert source.data(source.index(source.row_of_key(middle), COL_AFTER)) == "dense"
    assert f"{middle} left dense" in window.preview_panel.caption.text()
    with qtbot.waitSignal(window.sweep_finished, timeout=RUN_TIMEOUT_MS):
        window.run_sweep(["magnitude"], [0.5], 128)
    assert middle not in window.sweep_view.point_row("magnitude", 0.5).result.masks
    assert window._outcome_current()
    actions = window.table.context_actions(keys[0])
    assert [text for text, _, _ in actions] == ["Keep this layer dense", "Prune every layer again"]
    with qtbot.waitSignal(window.preview_updated, timeout=RUN_TIMEOUT_MS):
        actions[1][2]()
    assert window.kept_layers == set() and not window._outcome_current()
    assert set(window.preview.result.masks) == set(keys)
    window.set_kept_layers(set(keys))  # every layer: refused, said, nothing changes
    assert window.kept_layers == set() and hooks.infos[-1][0] == "One layer at least is pruned"
    window.set_kept_layers({keys[0]})
    with qtbot.waitSignal(window.ready, timeout=LOAD_TIMEOUT_MS):
        window.load_demo("digits_cnn")
    assert window.kept_layers == set() and window._request_layers() is None
    assert not hooks.errors


def test_a_pruned_model_starts_the_slider_at_its_own_sparsity(qtbot, window: MainWindow, hooks,
                                                             tmp_path: Path) -> None:
    """A model pruned before keeps its zeros (core.pruning refuses a sparsity under them): opened
    with the slider lower, the slider moves up to the least sparsity it can take, the status bar
    says why, and the preview and a run work from there."""
    from core.export import export_onnx
    from core.pruning import PruneRequest, apply_result, prune

    model = window.session.loaded.model
    pruned = apply_result(model, prune(model, window.bundle.calibration,
                                       PruneRequest(method="magnitude", sparsity=0.9)))
    path = export_onnx(pruned, window.bundle.evaluation.x[:2], tmp_path / "p90.onnx").path
    window.controls.set_sparsity(0.7)
    with qtbot.waitSignal(window.ready, timeout=LOAD_TIMEOUT_MS):
        drop_file(window, Path(path))
    assert window.controls.sparsity() == pytest.approx(0.9) and window.least_sparsity == pytest.approx(0.9)
    assert "already has 90.0% zeros" in window.statusBar().currentMessage()
    assert window.preview.result.sparsity == pytest.approx(0.9, abs=1e-3)
    outcome = run_and_wait(qtbot, window, "chita", 95)
    assert outcome.result.sparsity == pytest.approx(0.95, abs=1e-3)
    assert not hooks.errors


def test_save_pruned_weights_writes_a_state_dict_that_opens_again(qtbot, window: MainWindow, hooks,
                                                                   tmp_path: Path, monkeypatch) -> None:
    """File ▸ Save pruned weights (Ctrl+Shift+S): disabled before a run; after one, the dialog's
    name gets its ending from the chosen filter, the file holds the run's weights (zeros off its
    masks) and opens again in the window with the architecture; the folder is remembered."""
    from core.model_io import load_model

    assert not window.act_save_weights.isEnabled()
    outcome = run_and_wait(qtbot, window, "chita", 80)
    assert window.act_save_weights.isEnabled()
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (str(tmp_path / "tuned"), "safetensors (*.safetensors)")))
    with qtbot.waitSignal(window.weights_saved, timeout=RUN_TIMEOUT_MS) as saved:
        window.act_save_weights.trigger()
    report = saved.args[0]
    assert report.path == str(tmp_path / "tuned.safetensors") and report.format == "safetensors"
    assert any(title == "Weights saved" and "--arch digits_mlp" in text for title, text in hooks.infos)
    loaded = load_model(report.path, arch="digits_mlp")
    for key, mask in outcome.result.masks.items():
        assert torch.equal(loaded.model.get_parameter(key), outcome.result.weights[key])
        assert torch.equal(loaded.model.get_parameter(key) != 0, mask)
    assert st.read(window.settings, "export/folder", "") == str(tmp_path)
    assert not hooks.errors


def test_bad_file_shows_error_dialog(qtbot, window: MainWindow, hooks, tmp_path: Path) -> None:
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"this is not a model")
    window.open_model(str(bad))
    qtbot.waitUntil(lambda: bool(hooks.errors), timeout=30_000)
    title, text, _details = hooks.errors[-1]
    assert "broken.pt" in text
    assert "What to do" in text  # StudioError messages carry their fix
    assert window.session is not None and window.model_label.text() == "digits_mlp"  # still usable


def test_pickle_needs_explicit_consent(qtbot, window: MainWindow, hooks, tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "whole_model.pt"
    torch.save(window.session.loaded.model, path)  # a pickled nn.Module: loading runs code
    questions = []

    def refuse(parent, title, text, *, warning=False):
        questions.append((title, text, warning))
        return False

    monkeypatch.setattr(dialogs, "ask_yes_no", refuse)
    window.open_model(str(path))
    qtbot.waitUntil(lambda: bool(questions), timeout=30_000)
    title, text, warning = questions[0]
    assert warning and "EXECUTES CODE" in text
    qtbot.waitUntil(lambda: not window.runner.running(foreground=True), timeout=30_000)
    assert window.session.loaded.format == "demo"  # nothing loaded without consent

    monkeypatch.setattr(dialogs, "ask_yes_no", lambda *a, **k: True)
    with qtbot.waitSignal(window.ready, timeout=LOAD_TIMEOUT_MS):
        window.open_model(str(path))
    assert window.session.loaded.format == "pickle"
    assert not hooks.errors


@pytest.mark.parametrize("kind", ["state_dict", "safetensors"])
def test_state_dict_asks_for_architecture(qtbot, window: MainWindow, hooks, tmp_path: Path, monkeypatch,
                                          kind: str) -> None:
    """A state_dict dropped on the window (torch.save's, or a .safetensors file) asks for its
    architecture, offering the one its keys match."""
    state = window.session.loaded.model.state_dict()
    if kind == "safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "weights.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        path = tmp_path / "weights.pt"
        torch.save(state, path)
    asked = []

    def choose(parent, title, label, items, current=None):
        asked.append((items, current))
        return "digits_mlp"

    monkeypatch.setattr(dialogs, "ask_item", choose)
    with qtbot.waitSignal(window.ready, timeout=LOAD_TIMEOUT_MS):
        drop_file(window, path)  # drag and drop onto the window
    assert asked and "digits_mlp" in asked[0][0] and asked[0][1] == "digits_mlp"  # the key match
    assert window.session.loaded.format == kind
    assert window.session.loaded.arch == "digits_mlp"
    assert st.recent_files(window.settings)[0] == str(path.resolve())
    assert str(path.resolve()) in [a.text() for a in window.recent_menu.actions()]
    assert not hooks.errors


def test_an_onnx_file_opens_prunes_and_exports(qtbot, window: MainWindow, hooks, tmp_path: Path,
                                               monkeypatch) -> None:
    """An ONNX classifier dropped on the window: its graph is run with PyTorch (weights of no
    known network), BatchNorm can be recalibrated, CHITA prunes it, and Export writes it again."""
    from onnx_files import anonymous

    from core.demo import load_demo
    from core.export import export_onnx

    exported = tmp_path / "exported.onnx"
    export_onnx(load_demo("digits_cnn").model, torch.randn(2, 1, 8, 8), exported)
    path = anonymous(exported, tmp_path / "someone_elses.onnx")
    with qtbot.waitSignal(window.ready, timeout=LOAD_TIMEOUT_MS):
        drop_file(window, path)
    loaded = window.session.loaded
    assert loaded.format == "onnx" and loaded.arch is None and loaded.input_shape == (1, 8, 8)
    assert "onnx" in window.model_info.text()
    assert window.preview_panel.cells["sparsity"][0].text() == "0.0%"  # no zeros of its own
    assert window.controls.recal.isEnabled()  # its BatchNorm is a real BatchNorm module
    outcome = run_and_wait(qtbot, window, "chita", 80)
    assert outcome.result.sparsity == pytest.approx(0.8, abs=1e-3)
    target = tmp_path / "pruned.onnx"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(target), "")))
    with qtbot.waitSignal(window.export_finished, timeout=RUN_TIMEOUT_MS) as blocker:
        window.act_export.trigger()
    assert blocker.args[0].scored_differently == 0 and target.exists()
    # the pruned file opened again: its own zeros show as the loaded model's sparsity
    with qtbot.waitSignal(window.ready, timeout=LOAD_TIMEOUT_MS):
        window.open_model(str(target))
    assert window.preview_panel.cells["sparsity"][0].text() == "80.0%"
    assert window.preview_panel.cells["nonzeros"][0].text() == f"{outcome.result.nonzeros:,}"
    assert not hooks.errors


def test_the_model_line_says_what_an_onnx_files_export_keeps(qtbot, window: MainWindow, hooks,
                                                             tmp_path: Path) -> None:
    """The model line of a file with float32 input and float16 weights inside says so, and that
    exports keep it; a float16 file says it takes its input in float16; a file with float16
    weights behind Casts says they are computed in float32; a file exported for one
    image at a time says its batch is fixed, and that exports leave it open."""
    import warnings

    from onnx_files import anonymous, converted_float16

    from core.demo import load_demo
    from core.export import export_onnx

    exported = tmp_path / "exported.onnx"
    export_onnx(load_demo("digits_cnn").model, torch.randn(2, 1, 8, 8), exported)
    for keep_io_types, said in ((True, "(its weights are float16; exports keep that)"),
                                (False, "(the file takes it in float16; exports keep that)")):
        path = converted_float16(exported, tmp_path / f"converted_{keep_io_types}.onnx", keep_io_types=keep_io_types)
        with qtbot.waitSignal(window.ready, timeout=LOAD_TIMEOUT_MS):
            drop_file(window, path)
        assert f"input 1×8×8 {said}" in window.model_info.text()
    stored = tmp_path / "float16_storage.onnx"  # float16 weights behind Casts (export_onnx(float16=True))
    export_onnx(load_demo("digits_cnn").model, torch.randn(2, 1, 8, 8), stored, float16=True)
    with qtbot.waitSignal(window.ready, timeout=LOAD_TIMEOUT_MS):
        drop_file(window, stored)
    assert ("input 1×8×8 (its weights are stored in float16 and computed in float32; exports keep that)"
            in window.model_info.text())
    fixed = tmp_path / "fixed_batch.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(load_demo("digits_cnn").model, (torch.randn(1, 1, 8, 8),), str(fixed), dynamo=False)
    with qtbot.waitSignal(window.ready, timeout=LOAD_TIMEOUT_MS):
        drop_file(window, anonymous(fixed, tmp_path / "fixed_anon.onnx"))
    assert "input 1×8×8 (the file fixes the batch at 1; exports leave it open)" in window.model_info.text()
    assert not hooks.errors


def test_torchscript_model_with_batchnorm_says_its_statistics_are_used_as_stored(
        qtbot, window: MainWindow, hooks, tmp_path: Path) -> None:
    """A scripted CNN has BatchNorm the engine cannot recalibrate: the box says why, disabled."""
    import copy

    from core.demo import load_demo

    path = tmp_path / "cnn_scripted.pt"
    torch.jit.save(torch.jit.script(copy.deepcopy(load_demo("digits_cnn").model)), str(path))
    with qtbot.waitSignal(window.ready, timeout=LOAD_TIMEOUT_MS):
        window.open_model(str(path))
    assert window.session.loaded.format == "torchscript"
    recal = window.controls.recal
    assert not recal.isEnabled() and recal.text() == "Recalibrate (compiled: used as stored)"
    assert "used as stored" in recal.toolTip() and not hooks.errors


def test_torchvision_state_dict_preselects_its_network(qtbot, window: MainWindow, hooks, tmp_path: Path,
                                                       monkeypatch) -> None:
    """A torchvision checkpoint fine-tuned on 10 classes: the architecture question offers the
    torchvision network its keys match, first; cancelling it keeps the model that was open."""
    from core.architectures import build_architecture

    path = tmp_path / "squeeze_tuned.pt"
    torch.save(build_architecture("squeezenet1_1", num_classes=10).state_dict(), path)
    asked = []

    def cancel(parent, title, label, items, current=None):
        asked.append((items, current))
        return None

    monkeypatch.setattr(dialogs, "ask_item", cancel)
    before = window.session
    window.open_model(str(path))
    qtbot.waitUntil(lambda: bool(asked), timeout=LOAD_TIMEOUT_MS)
    items, current = asked[0]
    assert current == "squeezenet1_1" and items[0] == "squeezenet1_1"
    assert window.session is before and not hooks.errors


def test_start_on_a_model_file_without_data_takes_the_data_its_preset_needs(
        qtbot, window: MainWindow, hooks, tmp_path: Path) -> None:
    """``chita-studio --open MODEL`` without --data: the data last used with the model's preset
    (digits for the digits models); a model with no known preset waits for data, with a hint."""
    path = tmp_path / "weights.pt"
    torch.save(window.session.loaded.model.state_dict(), path)
    fresh = make_window(qtbot, tmp_path)
    fresh.controls.samples.setValue(128)
    with qtbot.waitSignal(fresh.ready, timeout=LOAD_TIMEOUT_MS):
        fresh.start(model=str(path), arch="digits_mlp")
    assert fresh.session.loaded.format == "state_dict" and fresh.bundle is not None
    assert fresh.data_source[0] == "digits"
    assert not hooks.errors, hooks.errors

    scripted = tmp_path / "scripted.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated but still loadable
        torch.jit.save(torch.jit.trace(window.session.loaded.model, torch.randn(2, 1, 8, 8)), str(scripted))
    blank = make_window(qtbot, tmp_path)
    with qtbot.waitSignal(blank.idle, timeout=LOAD_TIMEOUT_MS):
        blank.start(model=str(scripted))
    qtbot.waitUntil(lambda: blank.session is not None, timeout=LOAD_TIMEOUT_MS)
    assert blank.session.loaded.format == "torchscript" and blank.bundle is None
    qtbot.waitUntil(lambda: "needs data" in blank.stage_label.text(), timeout=5000)
    assert "Choose data" in blank.stage_label.text()
    assert not hooks.errors, hooks.errors


def test_a_model_set_up_for_another_image_size_is_offered_the_datas_size(
        qtbot, window: MainWindow, hooks, tmp_path: Path, monkeypatch) -> None:
    """A network that runs on the data's images although it was set up for another size (a
    torchvision ResNet on CIFAR) gets a question, not a dead end: yes takes the data's size; a
    network that cannot run on them gets the plain "do not fit" error and no question."""
    from core.architectures import build_architecture
    from core.demo import load_demo
    from core.model_io import load_model
    from gui import jobs

    asked = []
    monkeypatch.setattr(dialogs, "ask_yes_no", lambda parent, title, text, **kw: asked.append(text) or True)
    cnn = replace(load_demo("digits_cnn"), input_shape=(1, 16, 16))  # set up for 16×16; digits are 8×8
    with qtbot.waitSignal(window.ready, timeout=LOAD_TIMEOUT_MS):
        window._set_session(jobs.make_session(cnn))
    assert len(asked) == 1 and "1×16×16" in asked[0] and "1×8×8" in asked[0]
    assert window.session.loaded.input_shape == (1, 8, 8) and "input 1×8×8" in window.model_info.text()
    assert window.baseline is not None and window.baseline.eval.accuracy > 0.5
    assert not hooks.errors, hooks.errors

    path = tmp_path / "mlpnet.pt"
    torch.save(build_architecture("mlpnet").state_dict(), path)
    mlp = load_model(path, arch="mlpnet")  # 1×28×28 input: cannot take 8×8 digits
    with qtbot.waitSignal(window.idle, timeout=LOAD_TIMEOUT_MS):
        window._set_session(jobs.make_session(mlp))
    qtbot.waitUntil(lambda: bool(hooks.errors), timeout=LOAD_TIMEOUT_MS)
    assert len(asked) == 1 and "do not fit" in hooks.errors[0][0]
    assert window.session.loaded.input_shape == (1, 28, 28)


def test_refine_result_improves_the_last_run_without_pruning_again(qtbot, window: MainWindow, hooks,
                                                                   tmp_path: Path, monkeypatch) -> None:
    """"Refine result" (the button beside Export, Ctrl+Shift+F) refines the shown run's kept weights:
    same mask, the steps logged, the caption says so, magnitude is refined too for "vs"."""
    before = state_snapshot(window.session.loaded.model)
    panel = window.preview_panel
    assert not window.act_refine.isEnabled() and not window.refine_button.isEnabled()
    plain = run_and_wait(qtbot, window, "chita", 90)
    assert window.act_refine.isEnabled() and window.refine_button.isEnabled()
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS) as blocker:
        window.refine_button.click()
    refined = blocker.args[0]
    assert refined.result.request.refine_steps == 3  # the Refine box is off: 3 steps
    assert refined.result.request.method == "chita" and refined.result.lam == plain.result.lam
    for name, mask in plain.result.masks.items():
        assert torch.equal(refined.result.masks[name], mask), name
    steps = refined.result.info["refinement"]
    assert 1 <= len(steps) <= 3 and steps[0]["accepted"]
    timings = refined.result.timings  # no pruning again: the run's gradient time, plus refinement
    assert timings.get("gradients") == plain.result.timings.get("gradients") and timings["refine"] > 0
    assert window.outcome is refined and "Refined:" in panel.caption.text()
    # the like-for-like baseline (magnitude refined as many steps) follows in the background
    assert refined.magnitude_eval is None
    assert panel.versus_text() == "vs refined magnitude: measuring…"
    with qtbot.waitSignal(window.comparison_finished, timeout=RUN_TIMEOUT_MS) as compared:
        pass
    final = compared.args[0]
    assert window.outcome is final and final.result is refined.result
    versus = paired_difference(final.eval, final.magnitude_eval)
    assert panel.versus_text() == (f"vs refined magnitude: {100 * versus.difference:+.1f} points "
                                   f"[{100 * versus.ci[0]:+.1f}, {100 * versus.ci[1]:+.1f}]")
    assert final.magnitude_eval.accuracy != plain.magnitude_eval.accuracy or \
        final.magnitude_eval.loss < plain.magnitude_eval.loss  # refined, not the run's baseline
    # the export writes the refined weights and says so
    import onnxruntime as ort

    from core.pruning import apply_result

    target = tmp_path / "refined.onnx"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(target), "")))
    with qtbot.waitSignal(window.export_finished, timeout=RUN_TIMEOUT_MS):
        window.act_export.trigger()
    taken = sum(1 for s in steps if s["accepted"])
    assert any(f"CHITA at 90%, refined ({taken} of 3 steps taken)" in html for _, html in hooks.infos)
    x = window.bundle.evaluation.x[:8]
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        want = apply_result(window.session.loaded.model, refined.result)(x).numpy()
        unrefined = apply_result(window.session.loaded.model, plain.result)(x).numpy()
    assert np.max(np.abs(got - want)) < 1e-3 and np.max(np.abs(got - unrefined)) > 1e-2
    after = state_snapshot(window.session.loaded.model)
    assert all(torch.equal(before[k], after[k]) for k in before), "the loaded model must not change"
    assert not hooks.errors


def test_sweep_takes_refinement_from_the_pruning_panel(qtbot, window: MainWindow, hooks) -> None:
    window.controls.refine.setValue(1)
    window.controls.per_row.setValue(2)
    try:
        with qtbot.waitSignal(window.sweep_finished, timeout=RUN_TIMEOUT_MS) as blocker:
            window.run_sweep(["magnitude"], [0.9], 128)
    finally:
        window.controls.refine.setValue(0)
        window.controls.per_row.setValue(1)
    assert blocker.args[0].meta["refine_steps"] == 1
    assert blocker.args[0].meta["images_per_row"] == 2
    assert not hooks.errors


def test_images_per_row_from_the_controls_reaches_the_run_and_its_caption(qtbot, window: MainWindow,
                                                                          hooks) -> None:
    window.controls.per_row.setValue(3)
    try:
        outcome = run_and_wait(qtbot, window, "chita", 80)
        window.controls.per_row.setValue(40)  # more than the 1,258 calibration images hold
        capped = run_and_wait(qtbot, window, "obd", 80)
    finally:
        window.controls.per_row.setValue(1)
    assert outcome.result.request.images_per_row == 3 and outcome.result.info["images_per_row"] == 3
    assert capped.result.info["images_per_row"] == 5  # (1258 − 500 held out) // 128
    assert "128 samples of 5 images each (40 images per row asked" in window.preview_panel.caption.text()
    assert not hooks.errors


def test_caption_says_when_the_calibration_set_gave_fewer_samples_than_asked(qtbot, window: MainWindow,
                                                                           hooks) -> None:
    window.controls.samples.setValue(5000)
    try:
        outcome = run_and_wait(qtbot, window, "obd", 80)
        rows = outcome.result.info["samples"]
        assert rows < 1258 and outcome.result.info["samples_asked"] == 5000
        assert (f"at 80% sparsity, {rows:,} samples (5,000 asked: the calibration set holds "
                "1,258 images") in window.preview_panel.caption.text()
        run_and_wait(qtbot, window, "magnitude", 80)  # took no gradients: no samples in its caption
        assert "samples" not in window.preview_panel.caption.text()
        with qtbot.waitSignal(window.sweep_finished, timeout=RUN_TIMEOUT_MS):
            window.run_sweep(["obd"], [0.5], 5000)
        assert f"Gradients: {rows:,} gradient rows, not the 5,000 asked" in window.sweep_view.status.text()
    finally:
        window.controls.samples.setValue(128)
    assert not hooks.errors


def test_batchnorm_box_reaches_the_run_and_the_caption_says_what_happened(qtbot, settings_dir: Path,
                                                                          hooks) -> None:
    """On a BatchNorm model the box is enabled; ticked, the run recalibrates and the caption gives
    the held-out losses that decided it; unticked, the run and its magnitude baseline keep the
    statistics and the caption says so. On a model without BatchNorm the box is disabled."""
    w = make_window(qtbot, settings_dir)
    w.controls.samples.setValue(128)
    with qtbot.waitSignal(w.ready, timeout=LOAD_TIMEOUT_MS):
        w.start(demo="digits_cnn")
    assert w.controls.recal.isEnabled() and w.controls.recal.isChecked()
    assert w.controls.recal.text() == "Recalibrate after pruning"
    on = run_and_wait(qtbot, w, "magnitude", 90)
    d = on.result.info["recalibration"]
    assert on.result.request.recalibrate_bn is None and d["applied"]
    caption = w.preview_panel.caption.text()
    assert "BatchNorm: " in caption and (
        f"statistics recomputed after pruning (held-out loss {d['holdout_loss_before']:.4g} "
        f"→ {d['holdout_loss_after']:.4g})") in caption
    w.controls.recal.setChecked(False)  # the live preview follows the box
    qtbot.waitUntil(lambda: w.preview.result.request.recalibrate_bn is False, timeout=RUN_TIMEOUT_MS)
    off = run_and_wait(qtbot, w, "magnitude", 90)
    assert off.result.request.recalibrate_bn is False and "recalibration" not in off.result.info
    assert "statistics not recomputed after pruning (recalibration off)." in w.preview_panel.caption.text()
    assert off.eval.accuracy < on.eval.accuracy  # at 90% the stored statistics are stale
    w.controls.recal.setChecked(True)
    assert not hooks.errors
    w.close()


def test_batchnorm_images_box_reaches_the_run_the_preview_and_the_sweep(qtbot, settings_dir: Path,
                                                                        hooks) -> None:
    """The BN images box: Automatic picks the images as they are on the digits CNN (trained
    without augmentation); Cropped and mirrored reaches the run (and the caption says so), the
    live preview and a sweep, and gives other statistics than the automatic choice."""
    w = make_window(qtbot, settings_dir)
    w.controls.samples.setValue(128)
    with qtbot.waitSignal(w.ready, timeout=LOAD_TIMEOUT_MS):
        w.start(demo="digits_cnn")
    assert w.controls.bn_images.isEnabled() and w.controls.bn_augment() == "auto"
    # the live preview checks the BatchNorm statistics once; later previews reuse the decision
    w.controls.autorun.setChecked(False)
    qtbot.waitUntil(lambda: w.preview is not None, timeout=RUN_TIMEOUT_MS)
    with qtbot.waitSignal(w.preview_updated, timeout=RUN_TIMEOUT_MS):
        w.controls.slider.setValue(60)
    assert w.preview.result.info.get("bn_check_reused") is True and w.gradient_cache.check_hits >= 1
    auto = run_and_wait(qtbot, w, "magnitude", 90)
    assert auto.result.request.bn_augment == "auto" and auto.result.info["bn_augment"] == "none"
    assert "cropped and mirrored" not in w.preview_panel.caption.text()
    w.controls.bn_images.setCurrentIndex(w.controls.bn_images.findData("crop_flip"))
    qtbot.waitUntil(lambda: w.preview.result.request.bn_augment == "crop_flip", timeout=RUN_TIMEOUT_MS)
    assert w.preview.result.info["bn_augment"] == "crop_flip"
    crop = run_and_wait(qtbot, w, "magnitude", 90)
    assert crop.result.request.bn_augment == "crop_flip" and crop.result.info["bn_augment"] == "crop_flip"
    assert "statistics taken on randomly cropped and mirrored calibration images" in \
        w.preview_panel.caption.text()
    name = next(k for k in crop.result.buffers if k.endswith("running_mean"))
    assert not torch.equal(crop.result.buffers[name], auto.result.buffers[name])
    with qtbot.waitSignal(w.sweep_finished, timeout=RUN_TIMEOUT_MS):
        w.run_sweep(["magnitude"], [0.8], 128)
    assert w.sweep_view.result.meta["bn_augment"] == "crop_flip"
    w.controls.bn_images.setCurrentIndex(0)
    assert not hooks.errors
    w.close()


def test_batchnorm_box_is_disabled_without_batchnorm(window: MainWindow) -> None:
    assert not window.controls.recal.isEnabled()
    assert "no BatchNorm" in window.controls.recal.toolTip()
    assert "the model has none" in window.controls.recal.text()
    assert not window.controls.bn_images.isEnabled()
    assert "no BatchNorm" in window.controls.bn_images.toolTip()


def test_sweep_view_plots_and_saves(qtbot, window: MainWindow, hooks, tmp_path: Path) -> None:
    with qtbot.waitSignal(window.sweep_finished, timeout=RUN_TIMEOUT_MS):
        window.run_sweep(["magnitude", "magnitude_layer"], [0.5, 0.8], 128)
    plot = window.sweep_view.plot
    assert set(plot.curves) == {"magnitude", "magnitude_layer"}
    assert set(plot.bands) == {"magnitude", "magnitude_layer"}
    assert window.sweep_view.table.rowCount() == 4
    res = window.sweep_view.result
    row = res.series("magnitude")[-1]  # magnitude at 80%: the table's second row
    d = res.change(row)
    assert window.sweep_view.table.item(1, 4).text() == \
        f"{100 * d.difference:+.1f} ({100 * d.ci[0]:+.1f} to {100 * d.ci[1]:+.1f})"
    # per-layer magnitude against global magnitude at 80%, paired (the fourth row)
    lay = res.series("magnitude_layer")[-1]
    m = res.versus(lay)
    assert window.sweep_view.table.item(3, 5).text() == \
        f"{100 * m.difference:+.1f} ({100 * m.ci[0]:+.1f} to {100 * m.ci[1]:+.1f})"
    assert window.sweep_view.table.item(1, 5).text() == "–"  # magnitude against itself
    from core.class_accuracy import class_changes, describe_classes, most_changed
    classes = class_changes(row.eval, res.dense, window.bundle.evaluation)
    worst = most_changed(classes, 1)[0]  # magnitude at 80% costs the demo some class
    cell = window.sweep_view.table.item(1, 6)
    assert cell.text() == f"{worst.name} {100 * worst.change.difference:+.1f}"
    assert cell.toolTip() == describe_classes(classes) and cell.font().bold() == worst.clear
    # the table's side of the splitter shows all seven columns, or takes half the width
    table = window.sweep_view.table
    plot_w, table_w = window.sweep_view.splitter.sizes()
    assert table.horizontalHeader().length() <= table.viewport().width() or abs(table_w - plot_w) <= 1
    png = window.sweep_view.save_plot("png", str(tmp_path / "sweep.png"))
    svg = window.sweep_view.save_plot("svg", str(tmp_path / "sweep.svg"))
    csv = window.sweep_view.save_csv_file(str(tmp_path / "sweep.csv"))
    assert Path(png).stat().st_size > 0 and Path(svg).stat().st_size > 0 and Path(csv).stat().st_size > 0
    assert "worst_class" in Path(csv).read_text().splitlines()[0]
    # Curves ▸ one method per class: a line per class from the dense model (0%) through its points
    from core.sweep import class_curves

    view = window.sweep_view
    box = view.curves_box
    assert box.isEnabled() and [box.itemData(i) for i in range(box.count())] == [None, "magnitude", "magnitude_layer"]
    box.setCurrentIndex(box.findData("magnitude"))
    want = class_curves(res, window.bundle.evaluation, "magnitude")
    assert plot.class_mode is not None and set(plot.curves) == set(want) and len(want) == 10
    x, y = plot.curves[worst.name].getData()
    assert list(x) == [0.0, 50.0, 80.0] and list(y) == pytest.approx([100 * a for _, a in want[worst.name]])
    assert y[-1] == pytest.approx(100 * worst.accuracy)  # the table's worst class, at 80%
    assert "Magnitude (global): accuracy per class" in plot.title
    asked = []  # a class line's marker asks for its sweep point; the dense one at 0 asks nothing
    plot.point_clicked.connect(lambda m, sp: asked.append((m, sp)))
    marker = type("P", (), {"__init__": lambda self, x: setattr(self, "x", x),
                            "pos": lambda self: type("Q", (), {"x": lambda q, v=self.x: v})()})
    plot._clicked_class_point("magnitude", [0.5, 0.8], [marker(80.0)])
    plot._clicked_class_point("magnitude", [0.5, 0.8], [marker(0.0)])
    assert asked == [("magnitude", 0.8)]
    box.setCurrentIndex(0)
    assert plot.class_mode is None and set(plot.curves) == {"magnitude", "magnitude_layer"}
    assert not hooks.errors


def test_sweep_view_draws_each_point_as_it_is_done(qtbot, window: MainWindow, hooks,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The table and plot fill in point by point while the sweep runs; saving waits for the end."""
    shown = []
    real = window._on_sweep_partial

    def spy(result) -> None:
        real(result)
        view = window.sweep_view
        shown.append((view.table.rowCount(), set(view.plot.curves), view.save_csv.isEnabled()))

    monkeypatch.setattr(window, "_on_sweep_partial", spy)
    with qtbot.waitSignal(window.sweep_finished, timeout=RUN_TIMEOUT_MS):
        window.run_sweep(["magnitude", "chita"], [0.5, 0.8], 128)
    assert [rows for rows, _, _ in shown] == [1, 2, 3, 4]
    assert shown[0][1] == {"magnitude"} and shown[-1][1] == {"magnitude", "chita"}
    assert not any(saves for _, _, saves in shown)  # a running sweep is not saved half-way
    assert window.sweep_view.save_csv.isEnabled() and window.sweep_view.table.rowCount() == 4
    assert not hooks.errors


def test_a_cancelled_sweep_keeps_its_finished_points_for_saving(qtbot, window: MainWindow, hooks,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    real = window._on_sweep_partial

    def cancel_after_first(result) -> None:
        real(result)
        window.cancel_foreground()

    monkeypatch.setattr(window, "_on_sweep_partial", cancel_after_first)
    with qtbot.waitSignal(window.idle, timeout=RUN_TIMEOUT_MS):
        window.run_sweep(["magnitude", "chita"], [0.5, 0.8], 128)
    view = window.sweep_view
    kept = view.table.rowCount()  # the first point, and any that finished before the cancel landed
    assert 1 <= kept < 4 and "magnitude" in view.plot.curves
    assert f"cancelled after {kept} of 4 points" in view.status.text()
    assert view.save_csv.isEnabled() and view.save_png.isEnabled()
    path = view.save_csv_file(str(tmp_path / "partial.csv"))
    lines = Path(path).read_text().splitlines()
    assert len(lines) == 2 + kept and lines[1].startswith("dense,") and lines[2].startswith("magnitude,0.5,")
    assert not hooks.errors


def test_a_sweep_points_missing_magnitude_baseline_is_measured_in_the_light_lane(
        qtbot, window: MainWindow, hooks, monkeypatch) -> None:
    """A sweep without magnitude: the point shown gets its magnitude baseline from the light lane
    (on the light lane's own copy of the model), so it never waits behind a running sweep; the
    baseline is magnitude's with the point's settings."""
    from gui import jobs
    from gui.main_window import POINT_TITLE

    calls = []
    submit = window._submit
    monkeypatch.setattr(window, "_submit", lambda fn, *a, **k: (
        calls.append((k.get("lane", "heavy"), a[0])) if k.get("title") == POINT_TITLE else None) or submit(fn, *a, **k))
    with qtbot.waitSignal(window.sweep_finished, timeout=RUN_TIMEOUT_MS):
        window.run_sweep(["chita"], [0.8], 128)
    row = window.sweep_view.point_row("chita", 0.8)
    window.show_sweep_point("chita", 0.8)
    assert window.outcome.magnitude_eval is None
    qtbot.waitUntil(lambda: window.outcome.magnitude_eval is not None and window.outcome.onnx_bytes is not None,
                    timeout=RUN_TIMEOUT_MS)
    assert calls == [("light", window.session.light_model)]
    sparsity, ev = jobs._magnitude_baseline(window.session.loaded.model, window.bundle, row.result.request,
                                           window.session.loaded.arch, "check", None, None)
    assert window.outcome.magnitude_eval.accuracy == ev.accuracy and window.outcome.magnitude_sparsity == sparsity
    assert window.preview_panel.versus_text().startswith("vs magnitude: ")
    assert not hooks.errors


def test_a_sweep_point_is_shown_and_exported_like_a_run(qtbot, window: MainWindow, hooks,
                                                      tmp_path: Path, monkeypatch) -> None:
    """Double-clicking a sweep's row shows that point: it joins the Runs tab, the sidebar shows
    its accuracy against magnitude (the sweep's own magnitude row), its ONNX sizes arrive from a
    background job (in the light lane: it needs no gradients, so it never waits behind a running
    sweep), and Export writes exactly its masks, with float16 weights once they are switched on.
    Showing it again adds no run."""
    from gui.main_window import POINT_TITLE

    lanes = []
    submit = window._submit
    monkeypatch.setattr(window, "_submit", lambda fn, *a, **k: (
        lanes.append(k.get("lane", "heavy")) if k.get("title") == POINT_TITLE else None) or submit(fn, *a, **k))
    with qtbot.waitSignal(window.sweep_finished, timeout=RUN_TIMEOUT_MS):
        window.run_sweep(["magnitude", "chita"], [0.5, 0.8], 128)
    view = window.sweep_view
    row = view.point_row("chita", 0.8)
    mag = view.point_row("magnitude", 0.8)
    assert row.result is not None and not view.show_point.isEnabled()
    r = view._row_keys.index(("chita", 0.8))
    with qtbot.waitSignal(window.run_shown, timeout=5000) as shown:
        view.table.cellDoubleClicked.emit(r, 0)
    outcome = shown.args[0]
    assert outcome.result is row.result and outcome.eval is row.eval and outcome.from_sweep
    assert window.outcome is outcome and window.runs[-1] is outcome
    assert outcome.magnitude_eval is mag.eval  # the sweep's own magnitude point
    assert window.controls.method_name() == "chita" and window.controls.sparsity() == pytest.approx(0.8)
    assert window.preview_panel.after_text() == f"{100 * row.eval.accuracy:.1f}%"
    d = paired_difference(row.eval, mag.eval)
    assert window.preview_panel.versus_text().startswith(f"vs magnitude: {100 * d.difference:+.1f} points")
    assert window.runs_view.table.item(0, 10).text().endswith("from the sweep")  # Settings, newest first
    qtbot.waitUntil(lambda: window.outcome.onnx_bytes is not None, timeout=RUN_TIMEOUT_MS)
    assert window.runs[-1] is window.outcome and window.outcome.compressed_bytes > 0
    assert lanes == ["light"]
    n_runs = len(window.runs)
    view.table.selectRow(view._row_keys.index(("chita", 0.5)))
    window.tabs.setCurrentWidget(view)
    view.table.setFocus()
    with qtbot.waitSignal(window.run_shown, timeout=5000):
        qtbot.keyClick(view.table, Qt.Key.Key_Return)  # Enter shows the chosen point
    assert window.outcome.result is view.point_result("chita", 0.5) and len(window.runs) == n_runs + 1
    view.table.selectRow(view._row_keys.index(("chita", 0.8)))
    assert view.show_point.isEnabled()
    view.show_point.click()  # shown before: the same run again, no new one
    assert len(window.runs) == n_runs + 1 and window.outcome.result is row.result
    with qtbot.waitSignal(window.export_finished, timeout=RUN_TIMEOUT_MS):
        window.export_to(str(tmp_path / "point.onnx"))
    zeros = window.last_export.zero_fractions
    assert zeros and all(a == pytest.approx(row.result.layer_sparsity[k], abs=1e-6) for k, (a, _) in zeros.items())
    # float16 weights switched on: the shown point's sizes are measured again, the points export so
    window.set_float16_weights(True)
    qtbot.waitUntil(lambda: window.outcome.sizes_float16, timeout=RUN_TIMEOUT_MS)
    assert window.outcome.result is row.result and window.outcome.onnx_bytes < 0.6 * window.last_export.onnx_bytes
    (tmp_path / "points").mkdir()
    with qtbot.waitSignal(window.points_exported, timeout=RUN_TIMEOUT_MS) as done:
        window.export_points_to(str(tmp_path / "points"))
    assert [rep.float16_tensors for rep in done.args[0].values()] == [3, 3, 3, 3]
    window.set_float16_weights(False)
    # a marker clicked on the plot: magnitude's own point is its own baseline
    view.plot.point_clicked.emit("magnitude", 0.5)
    assert window.outcome.result is view.point_result("magnitude", 0.5)
    assert window.outcome.magnitude_eval is view.point_row("magnitude", 0.5).eval
    # after new data the sweep's points no longer apply, and their weights are let go
    window._set_bundle(window.bundle)
    assert all(r.result is None for r in view.result.rows) and not view.export_points.isEnabled()
    assert view.table.rowCount() == 4 and view.save_csv.isEnabled()  # the table can still be saved
    runs = list(window.runs)
    view.table.cellDoubleClicked.emit(r, 0)
    assert window.runs == runs and hooks.infos and "another model or data" in hooks.infos[-1][0]
    assert not hooks.errors


def test_sweep_tab_exports_every_point_to_a_folder(qtbot, window: MainWindow, hooks, tmp_path: Path) -> None:
    """*Export ONNX…* in the Sweep tab: one file per point, named for the model, method and
    sparsity, each running in onnxruntime with that point's accuracy on the evaluation images."""
    import onnxruntime as ort

    with qtbot.waitSignal(window.sweep_finished, timeout=RUN_TIMEOUT_MS):
        window.run_sweep(["magnitude", "chita"], [0.5, 0.8], 128)
    view = window.sweep_view
    assert view.export_points.isEnabled()
    with qtbot.waitSignal(window.points_exported, timeout=RUN_TIMEOUT_MS) as done:
        window.export_points_to(str(tmp_path))
    reports = done.args[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"digits_mlp_{m}_{s}.onnx" for m in ("magnitude", "chita") for s in (50, 80))
    x, y = window.bundle.evaluation.x.numpy(), window.bundle.evaluation.y.numpy()
    for (method, sparsity), rep in reports.items():
        row = view.point_row(method, sparsity)
        assert all(a == pytest.approx(row.result.layer_sparsity[k], abs=1e-6) for k, (a, _) in rep.zero_fractions.items())
        sess = ort.InferenceSession(rep.path, providers=["CPUExecutionProvider"])
        pred = sess.run(None, {sess.get_inputs()[0].name: x})[0].argmax(1)
        assert (pred == y).mean() == pytest.approx(row.eval.accuracy, abs=1e-9)
        assert rep.onnx_eval.accuracy == row.eval.accuracy and rep.scored_differently == 0
    assert hooks.infos[-1][0] == "Sweep exported" and "4 files in" in hooks.infos[-1][1]
    assert "each file's accuracy (last column) equals its point's" in hooks.infos[-1][1]
    assert "Exported 4 points" in view.status.text()
    assert not hooks.errors


def test_a_sweep_point_without_a_magnitude_row_measures_its_baseline(qtbot, window: MainWindow, hooks) -> None:
    """A sweep without magnitude: the point's comparison comes from a background job (the sidebar
    says "measuring…" meanwhile), with the same numbers a run's magnitude baseline has."""
    from core.evaluate import evaluate
    from core.pruning import apply_result, prune

    with qtbot.waitSignal(window.sweep_finished, timeout=RUN_TIMEOUT_MS):
        window.run_sweep(["obd"], [0.7], 128)
    window.sweep_view.table.cellDoubleClicked.emit(0, 0)
    shown = window.outcome
    assert shown.from_sweep and shown.magnitude_eval is None
    assert window.preview_panel.versus_text() == "vs magnitude: measuring…"
    qtbot.waitUntil(lambda: window.outcome.magnitude_eval is not None, timeout=RUN_TIMEOUT_MS)
    done = window.outcome
    assert done.result is shown.result and window.runs[-1] is done and done.onnx_bytes
    mag = prune(window.session.loaded.model, window.bundle.calibration,
                replace(shown.result.request, method="magnitude"))
    assert done.magnitude_sparsity == dict(mag.layer_sparsity)
    assert done.magnitude_eval.accuracy == evaluate(apply_result(window.session.loaded.model, mag),
                                                    window.bundle.evaluation).accuracy
    assert window.preview_panel.versus_text().startswith("vs magnitude: ") and "measuring" not in \
        window.preview_panel.versus_text()
    assert not hooks.errors


def test_a_sweep_point_whose_weights_were_not_kept_sets_the_panel_to_it(qtbot, window: MainWindow, hooks,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import gui.main_window as mw

    monkeypatch.setattr(mw, "SWEEP_KEEP_BYTES", 0)
    with qtbot.waitSignal(window.sweep_finished, timeout=RUN_TIMEOUT_MS):
        window.run_sweep(["obd"], [0.7], 128)
    view = window.sweep_view
    assert view.point_result("obd", 0.7) is None
    assert "not kept" in view.table.item(0, 0).toolTip()
    assert not view.export_points.isEnabled()  # nothing kept to export
    runs = list(window.runs)
    view.table.cellDoubleClicked.emit(0, 0)
    assert window.runs == runs
    assert window.controls.method_name() == "obd" and window.controls.sparsity() == pytest.approx(0.7)
    assert "Ctrl+R" in window.statusBar().currentMessage()
    assert not hooks.errors


def test_settings_persist_between_windows(qtbot, settings_dir: Path, hooks) -> None:
    first = make_window(qtbot, settings_dir)
    first.controls.slider.setValue(42)
    first.controls.set_method("obd")
    first.controls.samples.setValue(256)
    first.controls.stages.setValue(7)
    first.controls.refine.setValue(3)
    first.controls.per_row.setValue(4)
    first.controls.recal.setChecked(False)
    first.controls.bn_images.setCurrentIndex(first.controls.bn_images.findData("crop_flip"))
    first.act_dark.trigger()
    first.close()
    second = make_window(qtbot, settings_dir)
    assert second.controls.slider.value() == 42
    assert second.controls.spin.value() == 42
    assert second.controls.method_name() == "obd"
    assert second.controls.samples.value() == 256
    assert second.controls.stages.value() == 7 and not second.controls.stages.isEnabled()
    assert second.controls.refine.value() == 3 and second.controls.request().refine_steps == 3
    second.controls.refine.setValue(0)
    assert second.controls.per_row.value() == 4 and second.controls.request().images_per_row == 4
    second.controls.per_row.setValue(1)
    assert not second.controls.recal.isChecked() and second.controls.request().recalibrate_bn is False
    second.controls.recal.setChecked(True)
    assert second.controls.bn_augment() == "crop_flip" and second.controls.request().bn_augment == "crop_flip"
    second.controls.bn_images.setCurrentIndex(0)
    assert second.act_dark.isChecked() and second.theme.palette.name == "dark"
    second.act_dark.trigger()  # back to light for the tests that follow
    assert (settings_dir / "CHITA Studio" / "CHITA Studio.ini").exists()


def test_stages_control_applies_to_chitapp_only(qtbot, window: MainWindow) -> None:
    c = window.controls
    c.set_method("chita")
    assert not c.stages.isEnabled()
    c.set_method("chita++")
    assert c.stages.isEnabled()
    c.stages.setValue(0)
    assert c.stages.text() == "auto" and c.request().stages == 0  # 0 = auto in core.pruning
    c.stages.setValue(12)
    req = c.request()
    assert req.method == "chita++" and req.stages == 12
    c.stages.setValue(0)


def test_update_control_applies_to_chita_only_and_its_alpha_reaches_the_caption(
        qtbot, window: MainWindow, settings_dir: Path, monkeypatch) -> None:
    from gui import jobs
    c = window.controls
    c.set_method("obd")
    assert not c.update_scale.isEnabled()
    c.set_method("woodfisher")
    assert c.update_scale.isEnabled()
    c.set_method("chita")
    assert c.update_scale.isEnabled() and c.request().update_scale == 1.0  # the paper's whole update
    c.update_scale.setCurrentIndex(c.update_scale.findText("Auto (held-out error)"))
    assert c.request().update_scale is None and "Update auto" in c.hidden_summary()
    c.samples.setValue(128)
    out = run_and_wait(qtbot, window, "chita", 95)
    rec = out.result.info["update_scale"]  # the digits MLP has no BatchNorm: α is chosen
    assert rec["chosen"] in rec["grid"]
    assert f"Update: α = {rec['chosen']:g} of the weight update" in window.preview_panel.caption.text()
    seen: dict = {}
    real = jobs.sweep_job

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(jobs, "sweep_job", spy)
    with qtbot.waitSignal(window.sweep_finished, timeout=RUN_TIMEOUT_MS):
        window.run_sweep(["chita"], [0.9], 128)  # a sweep follows the Update box too
    assert "update_scale" in seen and seen["update_scale"] is None
    window.close()  # the choice is remembered
    again = make_window(qtbot, settings_dir)
    assert again.controls.update_scale_value() is None
    again.controls.update_scale.setCurrentIndex(0)
    again.controls.samples.setValue(1000)


def test_theme_and_presentation_mode(qtbot, window: MainWindow) -> None:
    window.act_presentation.trigger()
    assert window.theme.scale > 1.0
    window.act_dark.trigger()
    assert window.theme.palette.name == "dark"
    assert window.weight_hist.backgroundBrush().color().name() == window.theme.palette.panel
    # links in labels ("all settings", "Use 70") in the accent colour, not Qt's dark blue
    from PySide6.QtGui import QColor, QPalette
    from PySide6.QtWidgets import QApplication
    link = QApplication.instance().palette().color(QPalette.ColorRole.Link).name()
    assert link == QColor(window.theme.palette.accent).name()
    window.act_presentation.trigger()
    window.act_dark.trigger()
    assert window.theme.scale == 1.0 and window.theme.palette.name == "light"


def test_presentation_mode_does_not_draw_the_status_label_over_a_message(qtbot, window: MainWindow) -> None:
    """F11 rebuilds the status bar for the new font, which showed its label again under the
    message shown (two texts drawn over each other): the label stays hidden, the message stays.
    The Classes tab's image cells grow with the font and shrink back."""
    qtbot.waitUntil(lambda: window.session is not None, timeout=LOAD_TIMEOUT_MS)
    window.statusBar().showMessage("a class's numbers", 15000)
    qtbot.wait(50)
    assert not window.stage_label.isVisible()
    cells = window.changed_view.grid.gridSize().height()
    for _ in range(2):  # into presentation mode and out again
        window.act_presentation.trigger()
        qtbot.wait(300)
        assert not window.stage_label.isVisible()
        assert window.statusBar().currentMessage() == "a class's numbers"
        # the Classes tab's image cells follow the font (two caption lines under each image)
        assert (window.changed_view.grid.gridSize().height() > cells) == window.act_presentation.isChecked()
    window.statusBar().clearMessage()
    assert window.stage_label.isVisible()


def test_single_stage_chita_level_with_magnitude_points_to_chita_plus_plus() -> None:
    """The caption suggests CHITA++ only after a CHITA run that clearly loses to dense and is not
    clearly ahead of magnitude (ResNet20 at 80%: −11.8 vs dense, +0.0 [−1.8, +1.8] vs magnitude)."""
    from core.evaluate import PairedDifference
    from core.pruning import stages_hint as stages_note

    def d(lo: float, hi: float) -> PairedDifference:
        return PairedDifference((lo + hi) / 2, (lo, hi), 846, 10, 10)

    lost, level, ahead, same = d(-0.144, -0.092), d(-0.018, 0.018), d(0.01, 0.05), d(-0.021, 0.004)
    assert "CHITA++ takes it in stages" in stages_note("chita", lost, level)
    assert stages_note("chita", lost, ahead) == ""  # CHITA already gains over magnitude
    assert stages_note("chita", same, level) == ""  # nothing clearly lost (ResNet20 at 50%)
    assert stages_note("chita++", lost, level) == "" and stages_note("obd", lost, level) == ""
    assert stages_note("chita", lost, None) == ""  # the magnitude comparison still measuring


def test_a_very_narrow_layer_table_shortens_the_names_and_keeps_after(qtbot) -> None:
    """Where hiding Type, Params and Shape is not enough (a 1024-pixel screen, presentation mode
    on a 1280-pixel one), the table leaves ".weight" off the names, then the method off the
    *After* header, then shortens the names from the left, down to MIN_NAME_WIDTH; the filter
    still matches the whole names, and a wide table shows them whole again."""
    from gui.jobs import LayerRow
    from gui.layer_table import (
        COL_AFTER,
        COL_INDEX,
        COL_NAME,
        COL_SHARE,
        MIN_NAME_WIDTH,
    )

    names = [f"layer{s}.{b}.conv{c}.weight" for s in (1, 2, 3) for b in (0, 1, 2) for c in (1, 2)]
    rows = [LayerRow(n, n, "Conv2d", (16, 16, 3, 3), 2304, 1 / len(names), True, 0.0) for n in names]
    table = shown_layer_table(qtbot, rows, 0.8, "CHITA (IHT + backsolve)", 900, 300)
    model = table.model()
    name_of = lambda r: model.index(r, COL_NAME).data()  # noqa: E731
    header_after = lambda: model.headerData(COL_AFTER, Qt.Orientation.Horizontal)  # noqa: E731
    full = table.fit_columns(10_000)
    assert name_of(0) == "layer1.0.conv1.weight" and header_after() == "After (CHITA)" and not table.hides_for_room()
    h = table.horizontalHeader()
    bare = sum(h.sectionSize(c) for c in (COL_INDEX, COL_NAME, COL_SHARE, COL_AFTER))  # no optional column
    table.fit_columns(full - 30)  # Type and the others go first; the names stay whole
    assert name_of(0) == "layer1.0.conv1.weight" and table.hides_for_room()
    table.fit_columns(bare - 10)  # the names lose ".weight"; the header keeps the method
    assert name_of(0) == "layer1.0.conv1" and header_after() == "After (CHITA)" and not table.names_shortened
    table.fit_columns(1)  # then the header, then the names shortened (drawn "…1.0.conv1")
    assert header_after() == "After" and table.names_shortened
    assert h.sectionSize(COL_NAME) == MIN_NAME_WIDTH and not table.isColumnHidden(COL_AFTER)
    assert table.textElideMode() == Qt.TextElideMode.ElideLeft
    table.proxy.setFilterFixedString("conv2.weight")  # the filter reads the whole names
    assert table.model().rowCount() == 9
    table.proxy.setFilterFixedString("")
    table.fit_columns(10_000)
    assert name_of(0) == "layer1.0.conv1.weight" and header_after() == "After (CHITA)" and not table.hides_for_room()


def test_a_layer_table_measures_its_cells_once_per_change_not_at_every_resize(qtbot) -> None:
    """A large network's table (ResNet-50's 54 rows) stalled the window 0.1-0.4 s at every step
    of a splitter drag: each fit measured every cell about six times. The widths are now
    measured once per change of the data, equal to Qt's own measure, and a resize measures
    nothing; a change of the data (a preview's values and header) is measured and fitted."""
    from PySide6.QtWidgets import QStyledItemDelegate

    from gui.jobs import LayerRow
    from gui.layer_table import COL_AFTER, COL_NAME, COLUMNS, fmt_pct

    names = [f"layer{s}.{b}.conv{c}.weight" for s in (1, 2, 3, 4) for b in range(6) for c in (1, 2, 3)]
    rows = [LayerRow(n, n, "Conv2d", (256, 64, 3, 3), 147456, 0.0004, True, 0.0) for n in names]
    table = shown_layer_table(qtbot, rows, 0.5, "Magnitude (global)", 1200, 400)
    table.fit_columns()
    header = table.horizontalHeader()
    for col in range(len(COLUMNS)):  # the same widths as Qt's ResizeToContents measure
        table.resizeColumnToContents(col)
        assert header.sectionSize(col) == table.content_width(col), COLUMNS[col]
    measured = []

    class Counting(QStyledItemDelegate):  # Qt measures a cell by asking its delegate's size hint
        def sizeHint(self, option, index):  # noqa: N802 - Qt API
            measured.append(index.column())
            return super().sizeHint(option, index)

    table.setItemDelegateForColumn(COL_NAME, Counting(table))
    table.setItemDelegateForColumn(COL_AFTER, Counting(table))
    for width in range(1200, 500, -50):  # a splitter drag
        table.resize(width, 400)
        qtbot.wait(1)
    assert measured == [] and header.length() <= table.viewport().width()
    table.resize(1200, 400)
    qtbot.waitUntil(lambda: not table.hides_for_room())  # every column back, names whole
    before = header.sectionSize(COL_AFTER)
    table.source.set_after({n: 0.9996 for n in names}, "A method with a much longer name (and more)")
    qtbot.waitUntil(lambda: header.sectionSize(COL_AFTER) > before)  # refitted to the new header
    assert COL_AFTER in measured and header.length() <= table.viewport().width()
    assert table.model().index(0, COL_AFTER).data() == ">99.9%"  # not "100.0%": one in 2,500 is kept
    assert fmt_pct(0.0004) == "<0.1%" and fmt_pct(0.0) == "0.0%" and fmt_pct(1.0) == "100.0%"


def test_a_narrow_layer_table_hides_type_params_shape_before_after(qtbot, window: MainWindow) -> None:
    """Long layer names (ResNet20's) made the table wider than its pane and pushed *After*, the
    column a run fills, out of view. The table hides Sparsity-now where every layer is dense
    (a column of 0.0%), then Type, then Params, then Shape (the line above the plots gives
    them), and shows them again as it widens."""
    from gui.layer_table import COL_AFTER, COL_NOW, COL_PARAMS, COL_SHAPE, COL_TYPE

    optional = (COL_NOW, COL_TYPE, COL_PARAMS, COL_SHAPE)
    qtbot.waitUntil(lambda: window.session is not None, timeout=LOAD_TIMEOUT_MS)
    window.resize(1800, 900)  # room for every column beside the overview's minimum
    qtbot.wait(50)
    table, header = window.table, window.table.horizontalHeader()
    full = table.fit_columns(10_000)
    assert not any(table.isColumnHidden(c) for c in optional) and not table.hides_for_room()
    now_w, type_w = header.sectionSize(COL_NOW), header.sectionSize(COL_TYPE)
    assert table.fit_columns(full - 1) == full - now_w  # one pixel short: the zeros go, alone
    assert table.isColumnHidden(COL_NOW) and not table.isColumnHidden(COL_TYPE) and table.hides_for_room()
    assert table.fit_columns(full - now_w - 1) == full - now_w - type_w  # then Type
    narrow = table.fit_columns(1)
    assert all(table.isColumnHidden(c) for c in optional)
    assert not table.isColumnHidden(COL_AFTER) and narrow < full
    # a splitter drag: the columns follow the table's own width
    sizes = window.top_splitter.sizes()
    window.top_splitter.setSizes([narrow + 40, sum(sizes) - narrow - 40])
    qtbot.waitUntil(lambda: header.length() <= table.viewport().width())
    assert table.isColumnHidden(COL_TYPE) and not table.isColumnHidden(COL_AFTER)
    window.top_splitter.setSizes([full + 80, sum(sizes) - full - 80])
    qtbot.waitUntil(lambda: not any(table.isColumnHidden(c) for c in optional))
    # columns hidden while the 'After' header grew (the demo's first start): the refit after the
    # preview brings them back where there is room
    window.top_splitter.setSizes([narrow + 40, sum(sizes) - narrow - 40])
    qtbot.waitUntil(lambda: table.isColumnHidden(COL_TYPE))
    window._fit_table_if_clipped()
    qtbot.waitUntil(lambda: not any(table.isColumnHidden(c) for c in optional))
    assert header.length() <= table.viewport().width()
    # a model with zeros of its own keeps its Sparsity-now column: Type goes first
    rows = table.source.rows()
    table.source.set_rows([replace(rows[0], sparsity_now=0.5), *rows[1:]])
    table.fit_columns(full - 1)
    assert not table.isColumnHidden(COL_NOW) and table.isColumnHidden(COL_TYPE)
    table.source.set_rows(rows)
    # the header names the method short; its tooltip names it whole
    keys = window.session.summary.prunable_keys
    table.source.set_after({k: 0.5 for k in keys}, "OBD (diagonal Fisher)")
    assert table.source.after_label == "After (OBD)"
    tip = table.source.headerData(COL_AFTER, Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole)
    assert "OBD (diagonal Fisher)" in tip


def test_the_window_fits_a_1024_pixel_screen(qtbot, window: MainWindow) -> None:
    """Every tab laid out (the Sweep tab's row of six methods was the widest, 878 px, and made
    the window at least 1331 px wide; then the three plots' 220 px each): the window's least
    width fits a 1024×768 screen, so a 1280×800 one too. The methods' checkboxes name them
    short, their tooltips whole."""
    qtbot.waitUntil(lambda: window.session is not None, timeout=LOAD_TIMEOUT_MS)
    for i in (1, 2, 0):  # lay out every page as shown
        window.tabs.setCurrentIndex(i)
        qtbot.wait(50)
    assert window.minimumSizeHint().width() <= 1024, window.minimumSizeHint()
    window.tabs.setCurrentIndex(1)  # a finished sweep's status line wraps above its buttons
    with qtbot.waitSignal(window.sweep_finished, timeout=LOAD_TIMEOUT_MS):
        window.run_sweep(["magnitude"], [0.5], 64)
    qtbot.wait(50)
    assert "Sweep finished" in window.sweep_view.status.text()
    assert window.minimumSizeHint().width() <= 1024, window.minimumSizeHint()
    window.tabs.setCurrentIndex(0)
    box = window.sweep_view.method_boxes["obd"]
    assert box.text() == "OBD" and box.toolTip() == "OBD (diagonal Fisher)"
    assert window.sweep_view.method_boxes["magnitude_layer"].text() == "Magnitude per layer"


def test_a_short_window_folds_the_pruning_settings_to_keep_the_accuracy_in_view(qtbot, window: MainWindow) -> None:
    """On a 768-pixel-high screen the Preview's accuracy was below the sidebar's fold: the rows past
    Scope fold into their one-line summary where they would push it out of view, "all settings"
    shows them (the sidebar scrolls) and "Fewer settings" folds them again; a tall window shows
    them all, with no link."""
    c = window.controls
    qtbot.waitUntil(lambda: window.session is not None, timeout=LOAD_TIMEOUT_MS)
    viewport = window.sidebar_scroll.viewport()
    acc = window.preview_panel.after_acc

    def acc_bottom() -> int:
        return acc.mapTo(window.sidebar_scroll.widget(), acc.rect().bottomLeft()).y()

    window.resize(1400, 1300)
    qtbot.waitUntil(lambda: not c.compact and all(w.isVisibleTo(c) for w in c.advanced))
    assert not c.fold_note.isVisibleTo(c) and not c.hidden_note.isVisibleTo(c)
    window.resize(1366, 720)
    qtbot.waitUntil(lambda: c.compact)
    assert all(not w.isVisibleTo(c) for w in c.advanced) and c.hidden_note.isVisibleTo(c)
    assert "Samples 128" in c.hidden_note.text() and 'href="all"' in c.hidden_note.text()
    qtbot.waitUntil(lambda: acc_bottom() <= viewport.height())
    assert c.hidden_note.textInteractionFlags() & Qt.TextInteractionFlag.LinksAccessibleByKeyboard
    assert c.hidden_note.focusPolicy() != Qt.FocusPolicy.NoFocus  # Tab reaches the link
    c.hidden_note.linkActivated.emit("all")  # the user asks for every setting
    assert not c.compact and all(w.isVisibleTo(c) for w in c.advanced) and c.fold_note.isVisibleTo(c)
    assert c.request().samples == 128  # folded or not, the same request
    c.fold_note.linkActivated.emit("fewer")
    assert c.compact and not c.fold_note.isVisibleTo(c)
    window.resize(1400, 1300)
    qtbot.waitUntil(lambda: not c.compact)
    assert not c.fold_note.isVisibleTo(c)


def test_presentation_mode_keeps_run_and_the_accuracy_in_view(qtbot, window: MainWindow) -> None:
    """Large fonts must not push the Preview below the fold: the rows past Scope fold into one
    line that names their values (which still apply), and the layer table keeps its columns."""
    c = window.controls
    c.set_method("chita++")
    c.samples.setValue(256)
    c.lam.setText("1e-3")
    window.resize(1600, 1000)
    qtbot.wait(50)
    sidebar = window.main_splitter.sizes()[0]
    smallest = window.minimumSizeHint().width()
    window.act_presentation.trigger()
    window.grab()  # lays out every page in large type, the hidden Sweep and Runs tabs too
    window.showNormal()  # offscreen "full screen" is the platform's screen; judge at 1600×1000
    window.resize(1600, 1000)
    qtbot.wait(50)
    window._fit_table()
    assert all(not w.isVisibleTo(c) for w in c.advanced) and c.hidden_note.isVisibleTo(c)
    note = c.hidden_note.text()
    assert "Samples 256" in note and "λ 1e-3" in note and "Stages auto" in note
    req = c.request()
    assert (req.samples, req.lam, req.method) == (256, 1e-3, "chita++")  # hidden, not dropped
    c.samples.setValue(384)
    assert "Samples 384" in c.hidden_note.text()
    assert not window.model_info.isVisibleTo(window) and window.model_label.isVisibleTo(window)
    viewport = window.sidebar_scroll.viewport()
    acc = window.preview_panel.after_acc
    bottom = acc.mapTo(window.sidebar_scroll.widget(), acc.rect().bottomLeft()).y()
    assert bottom < viewport.height(), (bottom, viewport.height())
    header = window.table.horizontalHeader()
    assert header.length() <= window.table.viewport().width() + 1
    from gui.layer_table import COL_AFTER, COL_NOW, COL_TYPE
    # the dense demo's column of 0.0% goes too, and comes back with the normal fonts
    assert window.table.isColumnHidden(COL_NOW) and window.table.isColumnHidden(COL_TYPE)
    assert not window.table.isColumnHidden(COL_AFTER)
    window.act_presentation.trigger()
    # the sidebar the large fonts widened goes back to its width, and the table's columns return
    qtbot.waitUntil(lambda: abs(window.main_splitter.sizes()[0] - sidebar) <= 20)  # ± a scroll bar
    qtbot.waitUntil(lambda: not window.table.isColumnHidden(COL_NOW))
    # and the window can shrink again: the hidden tabs' minimum sizes follow the normal fonts
    # (within a scroll bar's width: the sidebar's bar may be shown now and not before)
    assert window.minimumSizeHint().width() <= smallest + 20, (window.minimumSizeHint(), smallest)
    assert all(w.isVisibleTo(c) for w in c.advanced) and not c.hidden_note.isVisibleTo(c)
    assert window.model_info.isVisibleTo(window) and window.open_button.isVisibleTo(window)
    c.samples.setValue(128)
    c.lam.setText("")
    c.set_method("chita")


def test_flow_layout_wraps_its_items_and_lets_a_line_edit_take_the_rest(qtbot) -> None:
    """gui.flow_layout.FlowLayout: one line where the items fit, more lines (and more height)
    where not, never narrower than its widest item; a line edit fills its line's spare room;
    ``right`` puts a line's buttons flush right."""
    from PySide6.QtWidgets import QLineEdit, QPushButton, QWidget

    from gui.flow_layout import FlowLayout

    host = QWidget()
    qtbot.addWidget(host)
    flow = FlowLayout(host)
    buttons = [QPushButton(f"Button number {i}") for i in range(4)]
    edit = QLineEdit()
    for b in buttons:
        flow.addWidget(b)
    flow.addWidget(edit)
    one_line = flow.sizeHint().width()
    assert flow.minimumSize().width() == max(max(b.sizeHint().width() for b in buttons), edit.minimumSizeHint().width())
    assert flow.heightForWidth(one_line) < flow.heightForWidth(one_line // 2) < flow.heightForWidth(1)
    host.resize(one_line + 300, 200)
    host.show()
    qtbot.waitExposed(host)
    tops = {b.geometry().top() for b in buttons}
    assert len(tops) == 1 and edit.geometry().right() >= host.width() - 2  # one line; the edit takes the rest
    host.resize(one_line // 2, 400)
    qtbot.waitUntil(lambda: len({b.geometry().top() for b in buttons}) > 1)
    boxes = [w.geometry() for w in (*buttons, edit)]
    assert not any(a.intersects(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    right = QWidget()
    qtbot.addWidget(right)
    row = FlowLayout(right, right=True)
    ok = QPushButton("OK")
    row.addWidget(ok)
    right.resize(400, 60)
    right.show()
    qtbot.waitUntil(lambda: ok.geometry().right() >= 398)


def test_presentation_mode_fits_a_1280_by_720_projector(qtbot, window: MainWindow) -> None:
    """Presentation mode made the window at least 1407×761 px, wider and taller than a 1280×720
    (or 1280×800) projector, with the accuracy below the sidebar's fold. Now the Sweep tab's rows
    and the button rows wrap, the plots are shorter, the pruning box folds Pattern, Scope and
    Keep dense too (and, if need be, the data's lines), and the layer table keeps *After* in
    view; leaving presentation mode shows them all again."""
    c = window.controls
    qtbot.waitUntil(lambda: window.session is not None, timeout=LOAD_TIMEOUT_MS)
    window.act_presentation.trigger()
    window.grab()  # lays out every page in large type, the hidden Sweep and Runs tabs too
    window.showNormal()  # offscreen "full screen" is the platform's screen: judge at 1280×720
    window.resize(1280, 720)
    for i in (1, 2, 0):
        window.tabs.setCurrentIndex(i)
        qtbot.wait(50)
    least = window.minimumSizeHint()
    assert least.width() <= 1280 and least.height() <= 720, least
    viewport = window.sidebar_scroll.viewport()
    acc = window.preview_panel.after_acc
    qtbot.waitUntil(lambda: acc.mapTo(window.sidebar_scroll.widget(), acc.rect().bottomLeft()).y()
                    <= viewport.height())
    # the accuracy change with its interval too, where the folded rows' line goes down to its link
    delta = window.preview_panel.delta
    assert delta.text().startswith("Accuracy change")
    qtbot.waitUntil(lambda: delta.mapTo(window.sidebar_scroll.widget(), delta.rect().bottomLeft()).y()
                    <= viewport.height())
    assert c.deep and not c.scope.isVisibleTo(c) and not c.pattern.isVisibleTo(c)
    note = c.hidden_note.toolTip() if c.terse else c.hidden_note.text()  # terse: the line in its tooltip
    assert "Scope global" in note and "Pattern none" in note and "all settings" in c.hidden_note.text().lower()
    from gui.layer_table import COL_AFTER
    table = window.table
    qtbot.waitUntil(lambda: table.horizontalHeader().length() <= table.viewport().width() + 1)
    assert not table.isColumnHidden(COL_AFTER)
    assert table.model().headerData(COL_AFTER, Qt.Orientation.Horizontal) == "After"  # its tooltip names the method
    window.tabs.setCurrentIndex(1)
    qtbot.wait(50)
    boxes = [b.geometry() for b in window.sweep_view.method_boxes.values()]
    assert not any(a.intersects(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])  # wrapped, not overlapping
    assert all(window.sweep_view.rect().contains(b.geometry()) for b in
               (window.sweep_view.save_csv, window.sweep_view.run_button))
    window.tabs.setCurrentIndex(0)
    window.act_presentation.trigger()
    window.resize(1600, 1000)
    qtbot.waitUntil(lambda: not c.compact)
    assert not c.deep and c.scope.isVisibleTo(c) and window.data_info.isVisibleTo(window)
    assert table.model().headerData(COL_AFTER, Qt.Orientation.Horizontal) != "After" or not window.outcome


def test_presentation_mode_takes_the_largest_font_scale_at_which_the_window_fits_the_screen(
        qtbot, window: MainWindow, monkeypatch) -> None:
    """With 1.4× fonts the window was at least 1,111 px wide, so on a 1024×768 projector its
    right side was off the screen. Presentation mode now takes the largest of its font scales at
    which the window's least width fits the screen (1.05× on the digits demo at 1024 px, whose
    pixels are 1.25× larger on the wall than a 1280-pixel projector's), and 1.4× where it fits."""
    from PySide6.QtCore import QEvent
    from PySide6.QtWidgets import QApplication

    from gui.theme import PRESENTATION_SCALE, PRESENTATION_SCALES

    qtbot.waitUntil(lambda: window.session is not None, timeout=LOAD_TIMEOUT_MS)

    def least() -> int:
        QApplication.sendPostedEvents(None, QEvent.Type.LayoutRequest)
        return window.minimumSizeHint().width()

    room = least() + 20  # a screen a little wider than the normal window needs (1024 against 995–1,013 px)
    monkeypatch.setattr(MainWindow, "_screen_width", lambda self: room)
    window.act_presentation.trigger()
    scale = window.theme.scale
    assert window.theme.presentation and scale < PRESENTATION_SCALE
    assert least() <= room
    larger = [s for s in PRESENTATION_SCALES if s > scale]
    window._apply_theme_at(min(larger))  # the next larger scale does not fit
    assert least() > room
    window.act_presentation.trigger()
    assert not window.theme.presentation and window.theme.scale == 1.0
    monkeypatch.setattr(MainWindow, "_screen_width", lambda self: 1920)
    window.act_presentation.trigger()
    assert window.theme.scale == PRESENTATION_SCALE and least() <= 1920
    monkeypatch.setattr(MainWindow, "_screen_width", lambda self: room)  # moved to the narrow screen
    window.windowHandle().screenChanged.emit(window.screen())
    assert window.theme.scale == scale
    window._apply_theme_at(1.0)
    p10 = least()  # presentation mode's least width with 1.0× fonts
    window.act_presentation.trigger()
    monkeypatch.setattr(MainWindow, "_screen_width", lambda self: p10)  # only 1.0× fits
    window.act_presentation.trigger()
    # the window's own least width is the chosen scale's at once, not that of the last scale
    # tried (a window sized before the next layout pass stayed that wide, off the screen)
    assert window.theme.scale == 1.0 and window.minimumSize().width() <= p10
    window.act_presentation.trigger()


def test_samples_over_what_fits_in_memory_get_a_note_with_a_fix(qtbot, window: MainWindow) -> None:
    """A large network's G does not fit with the default 1000 samples (ConvNeXt-T here: at most
    about 70). The run would be refused with that number; the controls say it beforehand, only
    for the methods that hold G, and a link sets the box to it. Nothing changes on its own."""
    c = window.controls
    note_shown = lambda: c.samples_note.isVisibleTo(c)  # noqa: E731
    assert c.samples_limit is not None and c.samples_limit > 1000  # the demo's G fits easily
    assert not note_shown()
    before = c.samples.value()
    c.set_method("chita")
    c.samples.setValue(1000)
    c.set_samples_limit(70)
    assert note_shown() and "At most 70 fit in memory" in c.samples_note.text()
    assert "more than 70 samples is refused" in c.samples_note.toolTip()
    assert c.samples.value() == 1000  # a note, not a silent change
    c.set_method("magnitude")  # needs no gradients
    assert not note_shown()
    c.set_method("obd")  # streams its diagonal where G does not fit
    assert not note_shown()
    c.set_method("woodfisher")
    assert note_shown()
    window.act_presentation.trigger()  # folded rows keep it: a run would be refused
    assert c.compact and not c.samples.isVisibleTo(c) and note_shown()
    window.act_presentation.trigger()
    assert note_shown()
    c.samples_note.linkActivated.emit("use")
    assert c.samples.value() == 70 and c.request().samples == 70 and not note_shown()
    c.set_samples_limit(None)
    c.samples.setValue(before)
    c.set_method("chita")
    assert not note_shown()


def test_the_samples_limit_follows_the_memory_available_now(qtbot, window: MainWindow, monkeypatch) -> None:
    """The window's limit is computed when the note is updated, from the memory available then,
    not once when the model was opened: memory taken by other programs since shows at once."""
    import core.fisher as fisher

    c = window.controls
    c.set_method("chita")
    c.samples.setValue(1000)
    assert not c.samples_note.isVisibleTo(c)
    p = sum(r.params for r in window.session.summary.rows if r.prunable)
    monkeypatch.setattr(fisher, "available_memory_bytes", lambda: 2 * 600 * p * 4 * 3 // 2)  # 600 rows fit
    assert c.samples_limit == 600
    c.samples.setValue(999)  # any change of the box or the method updates the note
    assert c.samples_note.isVisibleTo(c) and "At most 600 fit in memory" in c.samples_note.text()


def test_worker_signals(qtbot) -> None:
    from core.errors import StudioError
    from core.progress import check, report

    runner = TaskRunner()

    def work(n, *, progress=None, cancel=None):
        for i in range(n):
            check(cancel)
            report(progress, "counting", i + 1, n)
        return n * 2

    task = Task(work, 5)
    seen = []
    task.progress.connect(lambda stage, frac, eta, msg: seen.append((stage, frac)))
    with qtbot.waitSignal(task.finished, timeout=10_000) as blocker:
        runner.submit(task)
    assert blocker.args == [10] and seen and seen[-1] == ("counting", 1.0)

    def fail(*, progress=None, cancel=None):
        raise StudioError("nope", fix="do something else")

    with qtbot.waitSignal(runner.task_ended, timeout=10_000):
        failing = runner.submit(Task(fail))
    assert isinstance(failing.error, StudioError)

    stopped = Task(work, 10**6)
    stopped.cancel()
    with qtbot.waitSignal(stopped.cancelled, timeout=10_000):
        runner.submit(stopped)
    assert runner.shutdown(10_000)


def test_screenshot_mode_writes_png(qapp, settings_dir: Path, hooks, tmp_path: Path, monkeypatch) -> None:
    import sys
    from argparse import Namespace

    from gui.app import run_app

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    target = tmp_path / "shot.png"
    assert run_app(Namespace(screenshot=str(target), demo="digits_mlp")) == 0
    assert target.exists() and target.stat().st_size > 10_000
    from PySide6.QtGui import QImage

    image = QImage(str(target))
    assert image.width() >= 1200 and image.height() >= 800


def test_screenshot_of_a_model_without_data_stops_at_once_and_says_why(
        qapp, settings_dir: Path, hooks, tmp_path: Path, monkeypatch, capsys) -> None:
    """``chita-studio --open MODEL --screenshot F`` for a model with no known data: exit 1 with a
    message as soon as loading is over, instead of waiting for a window that cannot be ready."""
    import sys
    import time
    from argparse import Namespace

    from core.architectures import build_architecture
    from gui.app import run_app

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    scripted = tmp_path / "scripted.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated but still loadable
        torch.jit.save(torch.jit.trace(build_architecture("digits_mlp").eval(), torch.randn(2, 1, 8, 8)),
                       str(scripted))
    target = tmp_path / "shot.png"
    t0 = time.perf_counter()
    assert run_app(Namespace(screenshot=str(target), model=str(scripted))) == 1
    assert time.perf_counter() - t0 < 60 and not target.exists()
    assert "--data" in capsys.readouterr().err


def test_screenshot_of_a_model_that_needs_an_answer_says_what_was_asked(
        qapp, settings_dir: Path, hooks, tmp_path: Path, monkeypatch, capsys) -> None:
    """A screenshot run has no one to ask for a state_dict's architecture: it says what the app
    asked and exits 1 at once, and the dialogs' question functions are back afterwards."""
    import sys
    import time
    from argparse import Namespace

    from core.architectures import build_architecture
    from gui.app import run_app

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    path = tmp_path / "weights.pt"
    torch.save(build_architecture("digits_mlp").state_dict(), path)
    ask_item, ask_yes_no = dialogs.ask_item, dialogs.ask_yes_no
    target = tmp_path / "shot.png"
    t0 = time.perf_counter()
    assert run_app(Namespace(screenshot=str(target), model=str(path), data="digits")) == 1
    assert time.perf_counter() - t0 < 60 and not target.exists()
    assert 'asked "Architecture needed"' in capsys.readouterr().err
    assert dialogs.ask_item is ask_item and dialogs.ask_yes_no is ask_yes_no


def test_excepthook_shows_dialog(qapp, hooks, monkeypatch) -> None:
    import sys

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    dialogs.install_excepthook(lambda: None)
    try:
        raise ValueError("boom")
    except ValueError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    assert hooks.errors and "boom" in hooks.errors[-1][1]


def test_a_long_plot_title_is_shortened_to_the_plot_and_whole_again_when_wide(qtbot) -> None:
    """A narrow plot (presentation mode on a 1280-pixel screen) cut its title and axis labels off
    at both ends; they are shortened with "…" to the plot area and shown whole when there is
    room. The plot keeps them whole (``plot.title``, ``plot.axis_label``)."""
    from gui.plots import StudioPlot

    plot = StudioPlot()
    qtbot.addWidget(plot)
    long = "Mask search at 80%: -0.11%, converged after 217 swap steps"
    plot.resize(260, 200)
    plot.show()
    qtbot.waitExposed(plot)
    plot.set_title(long)
    label = plot.getPlotItem().titleLabel
    assert plot.title == long and label.text.endswith("…") and label.text.startswith("Mask search")
    assert label.item.boundingRect().width() <= plot.width() - 24
    axis_text = "refresh of the mask search (0: the magnitude mask's backsolve)"
    plot.setLabel("bottom", axis_text)
    bottom = plot.getPlotItem().getAxis("bottom")
    assert bottom.labelText.endswith("…") and plot.axis_label("bottom") == axis_text
    drawn = bottom.label.mapRectToScene(bottom.label.boundingRect())  # centred again, inside the plot
    assert drawn.left() >= 0 and drawn.right() <= plot.width()
    plot.resize(1200, 300)  # the resize shows them whole again
    qtbot.waitUntil(lambda: label.text == long and bottom.labelText == axis_text)
    plot.setLabel("bottom", "stage")  # a new, shorter label is centred at once, not where the old one was
    drawn = bottom.label.mapRectToScene(bottom.label.boundingRect())
    axis_rect = bottom.mapRectToScene(bottom.boundingRect())
    assert abs(drawn.center().x() - axis_rect.center().x()) < 10


def test_layer_histograms_count_every_weight_or_say_they_estimate(qtbot, monkeypatch) -> None:
    """Up to MAX_HIST_VALUES weights a histogram counts them all (the same counts as numpy's);
    a larger layer's counts come from a random sample scaled to the layer, and the plot's
    tooltip says so. Saliencies of zero sit at the smallest positive one's log."""
    from gui import plots

    rng = np.random.default_rng(1)
    w = rng.standard_normal(30_000).astype(np.float32)
    lo, hi = float(w.min()), float(w.max())
    exact = plots.histogram(w, lo, hi)
    assert np.array_equal(exact, np.histogram(w, bins=plots.BINS, range=(lo, hi))[0]) and exact.sum() == w.size
    hist = plots.WeightHistogram()
    qtbot.addWidget(hist)
    hist.set_data(w, w[np.abs(w) > 1.0])
    assert "estimated" not in hist.toolTip()
    monkeypatch.setattr(plots, "MAX_HIST_VALUES", 5_000)
    estimate = plots.histogram(w, lo, hi)
    assert abs(estimate.sum() - w.size) < 1e-6 * w.size  # scaled to the whole layer
    assert np.abs(estimate - exact).max() < 0.25 * exact.max()  # and close to the exact counts
    hist.set_data(w, w[np.abs(w) > 1.0])
    assert "Counts estimated from 5,000 weights drawn at random from the layer's 30,000" in hist.toolTip()
    sal = np.abs(w) ** 2
    sal[:10] = 0.0
    logs = plots.log_saliency(sal)
    assert np.allclose(logs[:10], np.log10(sal[10:].min())) and np.allclose(logs[10:], np.log10(sal[10:]))


def test_a_small_plot_hides_its_legend_and_shortens_its_line_labels(qtbot) -> None:
    """In presentation mode on a 1280×720 projector the small weight histogram's legend covered
    half its data, the ± threshold labels were cut at the plot's edge and the overview's
    "magnitude threshold" label ran off its left side. A crowded legend is hidden (its entries
    go to the tooltip), a line label takes its longest form that fits, or none, and all come
    back when the plot is large again."""
    import numpy as np
    import pyqtgraph as pg

    from gui.plots import LayerOverview, WeightHistogram

    rng = np.random.default_rng(0)
    values = rng.normal(0, 0.1, 2048)
    hist = WeightHistogram()
    qtbot.addWidget(hist)
    hist.resize(900, 600)
    hist.show()
    qtbot.waitExposed(hist)
    hist.set_data(values, kept=values[np.abs(values) > 0.12], threshold=0.12)
    legend = hist.getPlotItem().legend
    labels = [line.label for line in hist.lines]
    qtbot.waitUntil(lambda: legend.isVisible() and all(lb.isVisible() for lb in labels))
    assert "Legend" not in hist.toolTip()
    hist.resize(210, 150)
    qtbot.waitUntil(lambda: not legend.isVisible())
    assert "all weights, kept" in hist.toolTip()
    vb = hist.getPlotItem().getViewBox()

    def inside(lb) -> bool:
        drawn = vb.mapRectFromItem(lb, lb.boundingRect())
        return drawn.left() >= -1 and drawn.right() <= vb.width() + 1

    qtbot.waitUntil(lambda: all(inside(lb) for lb in labels if lb.isVisible()))  # once the layout settles
    assert all(lb.toPlainText() in hist.toolTip() for lb in labels if not lb.isVisible())
    hist.resize(900, 600)
    qtbot.waitUntil(lambda: legend.isVisible() and all(lb.isVisible() for lb in labels))
    assert "Legend" not in hist.toolTip() and "for room" not in hist.toolTip()

    overview = LayerOverview()
    qtbot.addWidget(overview)
    overview.resize(900, 400)
    overview.show()
    qtbot.waitExposed(overview)
    keys = ["fc1.weight", "fc2.weight", "fc3.weight"]
    overview.set_data(keys, {k: [0.01, 0.05, 0.1, 0.16, 0.28] for k in keys})
    overview.set_threshold(0.188)
    line = next(i for i in overview.getPlotItem().items if hasattr(i, "label") and i.label is not None)
    qtbot.waitUntil(lambda: line.label.toPlainText() == "magnitude threshold 0.188")
    overview.resize(200, 300)  # the least size
    qtbot.waitUntil(lambda: line.label.toPlainText() in ("threshold 0.188", "0.188"))
    drawn = overview.getPlotItem().getViewBox().mapRectFromItem(line.label, line.label.boundingRect())
    assert drawn.left() >= -1
    assert "Shortened or hidden for room: magnitude threshold 0.188" in overview.toolTip()  # whole there

    # the sweep's dense line near the top: its label stays inside the plot area, under the title
    from types import SimpleNamespace

    from gui.sweep_view import SweepPlot

    def ev(acc: float) -> SimpleNamespace:
        return SimpleNamespace(accuracy=acc, accuracy_ci=(acc - 0.02, min(1.0, acc + 0.015)))

    sweep = SweepPlot()
    qtbot.addWidget(sweep)
    (x0, x1), (y0, y1) = sweep.getPlotItem().getViewBox().viewRange()
    assert x0 <= 0 and x1 >= 100 and y0 <= 0 and y1 >= 100  # empty: the axes in percent, not 0–1
    sweep.resize(380, 330)  # the Sweep tab's plot in presentation mode at 1280×720
    sweep.show()
    qtbot.waitExposed(sweep)
    sweep.set_data([("chita", s, ev(a)) for s, a in ((0.3, 0.97), (0.5, 0.97), (0.8, 0.957), (0.95, 0.51))]
                   + [("magnitude", s, ev(a)) for s, a in ((0.3, 0.96), (0.5, 0.94), (0.8, 0.85), (0.95, 0.27))],
                   ev(0.968))
    dense = next(i for i in sweep.getPlotItem().items if isinstance(i, pg.InfiniteLine))
    svb = sweep.getPlotItem().getViewBox()
    qtbot.waitUntil(lambda: dense.label.isVisible() and svb.mapRectFromItem(
        dense.label, dense.label.boundingRect()).top() >= 0)
    assert dense.label.toPlainText().endswith("96.8%")
    svb.setYRange(50, 60, padding=0)  # the user's zoom stays: the room is kept on resizes and redraws only
    qtbot.wait(50)
    assert svb.viewRange()[1] == pytest.approx([50, 60])


def test_a_result_dialog_shows_its_whole_text_or_scrolls(qtbot) -> None:
    """An export's report was cut off at its bottom in presentation mode on a 1280×720 screen (Qt
    caps a new window at two thirds of the screen). The dialog is as tall as its text up to 90%
    of the screen, scrolls beyond that, and its width follows the font."""
    from PySide6.QtGui import QFont
    from PySide6.QtWidgets import QApplication

    rows = "".join(f"<tr><td>Row {i}</td><td><b>value {i} with a few more words</b></td></tr>" for i in range(8))
    short = dialogs.InfoDialog(None, "Exported", f"<table>{rows}</table>")
    qtbot.addWidget(short)
    short.show()
    qtbot.waitExposed(short)
    assert short.scroll.verticalScrollBar().maximum() == 0  # all of it in view
    assert short.label.height() >= short.label.heightForWidth(short.label.width()) - 1
    long_rows = rows * 40
    tall = dialogs.InfoDialog(None, "Exported", f"<table>{long_rows}</table>")
    qtbot.addWidget(tall)
    tall.show()
    qtbot.waitExposed(tall)
    avail = tall.screen().availableGeometry().height()
    assert tall.height() <= 0.9 * avail + 1 and tall.scroll.verticalScrollBar().maximum() > 0
    before = QApplication.font()
    big = QFont(before)
    big.setPointSizeF(before.pointSizeF() * 2)  # large type (presentation mode's is 1.4×)
    QApplication.setFont(big)
    try:
        large = dialogs.InfoDialog(None, "Exported", f"<table>{rows}</table>")
        qtbot.addWidget(large)
    finally:
        QApplication.setFont(before)
    assert large.label.minimumWidth() > 1.25 * short.label.minimumWidth()


class _Cyclic:
    """A reference cycle that only the cyclic garbage collector can free."""

    def __init__(self) -> None:
        self.me = self


def test_cyclic_garbage_is_collected_on_the_gui_thread_only_while_a_window_is_open(
        qtbot, settings_dir: Path) -> None:
    """A collection triggered in a worker thread can tear down Qt objects off the GUI thread and
    deadlock against the GUI thread (seen in test_pickle_needs_explicit_consent during
    torch.load): with a window open, worker threads never collect, the GUI thread's timer does,
    and closing the last window restores automatic collection."""
    import gc
    import threading
    import weakref

    from gui import main_thread_gc

    assert gc.isenabled() and not main_thread_gc.active()
    window = make_window(qtbot, settings_dir)
    assert main_thread_gc.active() and not gc.isenabled()
    refs, keep = [], []

    def worker() -> None:
        obj = _Cyclic()
        refs.append(weakref.ref(obj))
        del obj
        # enough new containers to trigger a generation-0 collection, kept alive so that the
        # timer's check also sees the count above the threshold
        keep.extend([] for _ in range(20 * gc.get_threshold()[0]))

    t = threading.Thread(target=worker)
    t.start()
    t.join()  # the GUI thread is blocked here: only the worker could have collected
    assert refs[0]() is not None  # it did not
    qtbot.waitUntil(lambda: refs[0]() is None, timeout=5_000)  # the GUI thread's timer did
    keep.clear()
    window.close()
    assert gc.isenabled() and not main_thread_gc.active()


def test_export_right_after_refining_does_not_wait_for_the_baseline(qtbot, window: MainWindow, hooks,
                                                                   tmp_path: Path, monkeypatch) -> None:
    """The background "refined magnitude" comparison gives way to an export (cancelled, so the
    export does not queue behind it) and is measured again once the export is done."""
    import time

    from core.errors import Cancelled
    from gui import jobs

    real = jobs.refined_magnitude_job
    calls = []

    def slow_then_real(*args, cancel=None, **kwargs):
        calls.append(window.last_export is None)
        if window.last_export is None:  # before the export it would take a minute: only a cancel ends it
            for _ in range(6000):
                if cancel is not None and cancel.cancelled:
                    raise Cancelled("comparison cancelled")
                time.sleep(0.01)
        return real(*args, cancel=cancel, **kwargs)

    monkeypatch.setattr(jobs, "refined_magnitude_job", slow_then_real)
    run_and_wait(qtbot, window, "chita", 80)
    with qtbot.waitSignal(window.run_finished, timeout=RUN_TIMEOUT_MS):
        window.act_refine.trigger()
    assert window.preview_panel.versus_text() == "vs refined magnitude: measuring…"
    target = tmp_path / "refined.onnx"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(target), "")))
    started = time.monotonic()
    with qtbot.waitSignal(window.export_finished, timeout=RUN_TIMEOUT_MS):
        window.act_export.trigger()
    assert time.monotonic() - started < 30 and target.exists()
    with qtbot.waitSignal(window.comparison_finished, timeout=RUN_TIMEOUT_MS) as compared:
        pass
    # measured once the export was done (a comparison still queued when the export cancelled it
    # never ran: the lane may have been busy with the importance pass)
    assert calls[-1] is False and compared.args[0].magnitude_eval is not None
    assert window.preview_panel.versus_text().startswith("vs refined magnitude: ")
    assert "measuring" not in window.preview_panel.versus_text()
    assert not hooks.errors


def test_refine_result_stops_at_the_most_steps_there_are(qtbot, window: MainWindow, hooks) -> None:
    from core.pruning import MAX_REFINE_STEPS

    outcome = run_and_wait(qtbot, window, "magnitude", 70)
    result = replace(outcome.result, request=replace(outcome.result.request, refine_steps=MAX_REFINE_STEPS))
    window.outcome = replace(outcome, result=result)
    window.act_refine.trigger()
    assert hooks.infos and hooks.infos[-1][0] == "Refined as far as it goes"
    assert not any(t.title.startswith("Refining") for t in window.runner.running())
    assert not hooks.errors


@pytest.mark.parametrize("name", ["light", "dark"])
def test_style_sheet_fills_every_field_and_its_images_exist(name: str) -> None:
    """No $field is left unfilled, and every url() (the ticks of checked and disabled-checked
    boxes) names a file that exists."""
    import re

    from gui.theme import make_theme, style_sheet

    qss = style_sheet(make_theme(name))
    assert "$" not in re.sub(r"/\*.*?\*/", "", qss, flags=re.S)  # comments may name fields
    urls = re.findall(r"url\(([^)]+)\)", qss)
    assert any(u.endswith("check_muted.svg") for u in urls)
    for u in urls:
        assert Path(u).is_file(), u


def test_importance_map_axis_names_a_conv_kernels_columns() -> None:
    from gui.jobs import as_matrix, matrix_columns_label

    assert matrix_columns_label((32, 64)) == "input"
    assert matrix_columns_label((16, 8, 3, 3)) == "input (8·3·3)"
    assert as_matrix(np.zeros((16, 8, 3, 3))).shape == (16, 8 * 3 * 3)


def test_model_summary_names_the_pattern_a_pruned_model_keeps(qtbot, window: MainWindow, hooks,
                                                              tmp_path: Path) -> None:
    """A model pruned to 2:4 before (an export opened again) says so on its model line; the
    summary holds the patterns its prunable weights keep (none for the dense demo)."""
    from core.pruning import PruneRequest, apply_result, prune
    from gui import jobs

    loaded = window.session.loaded
    assert jobs.summarize_loaded(loaded).patterns == {}
    result = prune(loaded.model, window.bundle.calibration,
                   PruneRequest(method="magnitude", sparsity=0.5, pattern="2:4"), arch=loaded.arch)
    pruned = replace(loaded, model=apply_result(loaded.model, result))
    assert jobs.summarize_loaded(pruned).patterns == {"2:4": [], "4:8": []}
    torch.save(pruned.model.state_dict(), tmp_path / "digits_2_4.pt")
    with qtbot.waitSignal(window.ready, timeout=LOAD_TIMEOUT_MS):
        window.open_model(str(tmp_path / "digits_2_4.pt"), arch="digits_mlp")
    assert "keep 2:4 in every block" in window.model_info.text()
    # a model sparser than the pattern: the pattern still previews (blocks keep what they have)
    sparse = prune(loaded.model, window.bundle.calibration, PruneRequest(method="magnitude", sparsity=0.9),
                   arch=loaded.arch)
    torch.save(apply_result(loaded.model, sparse).state_dict(), tmp_path / "digits_90.pt")
    with qtbot.waitSignal(window.ready, timeout=LOAD_TIMEOUT_MS):
        window.open_model(str(tmp_path / "digits_90.pt"), arch="digits_mlp")
    assert window.controls.sparsity() == 0.9
    with qtbot.waitSignal(window.preview_updated, timeout=RUN_TIMEOUT_MS):
        window.controls.set_pattern("2:4")
    assert window.preview.result.request.pattern == "2:4" and window.preview.result.sparsity >= 0.9
    assert not hooks.errors


def test_sweep_compares_methods_at_the_panels_pattern(qtbot, window: MainWindow, hooks) -> None:
    """With a pattern in the Pruning panel the sweep compares the methods at the pattern's
    sparsity (the sparsities field does not apply), each point in the pattern, and says so."""
    window.controls.set_pattern("2:4")
    assert not window.sweep_view.sparsities.isEnabled()  # the pattern fixes the sparsity
    with qtbot.waitSignal(window.sweep_finished, timeout=RUN_TIMEOUT_MS) as blocker:
        window.run_sweep(["magnitude", "chita"], [0.7, 0.9], 128)
    result = blocker.args[0]
    assert [(r.method, r.sparsity) for r in result.rows] == [("magnitude", 0.5), ("chita", 0.5)]
    assert result.meta["pattern"] == "2:4"
    assert all(r.result.request.pattern == "2:4" for r in result.rows)
    plot = window.sweep_view.plot  # one sparsity: the methods side by side, the pattern in the title
    assert "2:4" in plot.title and set(plot.curves) == {"magnitude", "chita"}
    window.controls.set_pattern("")
    assert window.sweep_view.sparsities.isEnabled()
    window.show_sweep_point("chita", 0.5)  # the point shown sets the panel to its pattern again
    assert window.controls.pattern_value() == "2:4" and window.outcome.result.request.pattern == "2:4"
    assert not hooks.errors


def test_layer_sensitivity_draws_each_layers_cost_and_clears_with_the_model(qtbot, window: MainWindow,
                                                                          hooks) -> None:
    """Run ▸ Layer sensitivity (Ctrl+Shift+L) prunes each prunable layer alone at the slider's
    sparsity in the background: the Sensitivity tab gets one bar per layer, the status bar names
    the costliest, and opening another model clears it."""
    window.controls.slider.setValue(90)
    with qtbot.waitSignal(window.sensitivity_finished, timeout=RUN_TIMEOUT_MS) as blocker:
        window.run_sensitivity()
    result = blocker.args[0]
    keys = window.session.summary.prunable_keys
    assert [r.layer for r in result.rows] == keys and all(r.sparsity == 0.9 for r in result.rows)
    assert "calibration" in result.images
    bars = window.sensitivity_bars
    assert window.overview_tabs.currentWidget() is bars and bars.bars is not None
    assert list(bars.values) == keys and "90%" in bars.title
    assert "costliest" in window.statusBar().currentMessage()
    window.table.select_key(keys[-1])  # the chosen layer's bar is highlighted, as in Spread
    assert bars.selected == keys[-1]
    with qtbot.waitSignal(window.ready, timeout=LOAD_TIMEOUT_MS):
        window.load_demo("digits_cnn")
    assert bars.bars is None and not bars.values
    assert not hooks.errors


def test_classes_tab_shows_each_class_change_against_dense(qtbot, window: MainWindow, hooks) -> None:
    """The Classes tab draws the shown run's (or preview's) accuracy change per class against the
    dense model on the same evaluation images, with the paired counts of core.class_accuracy; a
    new model's preview replaces it."""
    from core.class_accuracy import called, class_scores

    bars = window.class_bars
    outcome = run_and_wait(qtbot, window, "magnitude", 90)
    labels = window.bundle.evaluation.y
    want = class_scores(outcome.eval, labels, reference=window.baseline.eval)
    assert [s.label for s in bars.shown] == list(range(10)) and bars.bars is not None
    assert [s.change for s in bars.shown] == [s.change for s in want]
    assert sum(s.change.b_only for s in bars.shown) == int((window.baseline.eval.hits & ~outcome.eval.hits).sum())
    assert bars.overall == pytest.approx(outcome.eval.accuracy - window.baseline.eval.accuracy)
    assert "90%" in bars.title and "Magnitude" in bars.title
    assert "dashed: all images" in bars.axis_label("bottom")
    assert f"{sum(s.clear for s in want)} of 10 here" in bars.toolTip()
    worst = min(want, key=lambda c: (c.change.difference, c.label))
    assert f"Where the images went:\n{called(worst)} {100 * worst.change.difference:+.1f}: {worst.change.b_only} images lost" \
        in bars.toolTip()
    # a click on a bar puts its class's numbers and where its lost images went in the status bar
    from PySide6.QtCore import QPointF

    vb = bars.getPlotItem().vb
    at = vb.mapViewToScene(QPointF(worst.label, worst.change.difference * 50))  # inside the bar
    bars._clicked(type("Click", (), {"scenePos": lambda self: at})())
    message = window.statusBar().currentMessage()
    assert message.startswith(f"{called(worst)}: {100 * worst.accuracy:.2f}% (dense") and "images lost" in message
    assert bars.class_at(worst.label + 0.5) is None  # between two bars
    # against magnitude at the same sparsity: nothing to compare for a magnitude run...
    assert not window.class_against.isEnabled()
    window.class_against.setCurrentIndex(window.class_against.findData("magnitude"))
    assert not bars.shown and "magnitude" in bars._message.text()
    # ...and, for a CHITA run, its change against the magnitude run measured with it
    chita = run_and_wait(qtbot, window, "chita", 90)
    assert window.class_against.isEnabled() and chita.magnitude_eval is not None
    versus = class_scores(chita.eval, labels, reference=chita.magnitude_eval)
    assert [s.change for s in bars.shown] == [s.change for s in versus]
    assert bars.axis_label("left") == "change vs magnitude (points)"
    assert window.settings.value("view/classes_against") == "magnitude"  # remembered
    window.class_against.setCurrentIndex(window.class_against.findData("dense"))
    assert [s.change for s in bars.shown] == [s.change for s in class_scores(chita.eval, labels,
                                                                             reference=window.baseline.eval)]
    with qtbot.waitSignal(window.ready, timeout=LOAD_TIMEOUT_MS):
        window.load_demo("digits_cnn")
    qtbot.waitUntil(lambda: window.preview is not None, timeout=RUN_TIMEOUT_MS)
    qtbot.waitUntil(lambda: bool(bars.shown), timeout=RUN_TIMEOUT_MS)  # the new model's preview
    assert bars.shown and "Magnitude" in bars.title and window.outcome is None
    assert not hooks.errors


def test_classes_tab_shows_the_images_a_run_lost(qtbot, window: MainWindow, hooks, tmp_path: Path,
                                                 monkeypatch) -> None:
    """Under the class bars, the evaluation images the shown run lost against the reference
    (core.changed_images), captioned with their true class and the new prediction; a click on a
    bar shows that class's alone, the chooser shows the gained ones, and against magnitude the
    images are those CHITA lost to magnitude."""
    from PySide6.QtCore import QPointF

    from core.changed_images import changed_images
    from core.evaluate import paired_difference
    from gui.changed_images_view import LIMIT

    view = window.changed_view
    view.set_kind("lost")
    outcome = run_and_wait(qtbot, window, "magnitude", 90)
    assert view.grid.count() == 0 and view.changed  # listed, not drawn behind another tab
    window.overview_tabs.setCurrentIndex(window.overview_tabs.count() - 1)  # the Classes tab
    labels = window.bundle.evaluation.y
    lost = changed_images(outcome.eval, window.baseline.eval, labels)
    change = paired_difference(outcome.eval, window.baseline.eval)
    assert len(lost) == change.b_only > 0 and view.changed == lost
    assert view.grid.count() == min(LIMIT, len(lost))
    assert view.header.text().startswith(f"{len(lost)} images lost against dense")
    first = view.grid.item(0)
    assert first.text() == f"{lost[0].label}\n→ {lost[0].prediction}" and not first.icon().isNull()
    from core.changed_images import guesses_text

    i = lost[0].index
    run_says, dense_says = guesses_text(outcome.eval, i), guesses_text(window.baseline.eval, i)
    assert run_says.startswith(f"{lost[0].prediction} ") and dense_says.startswith(f"{lost[0].label} ")
    assert first.toolTip() == (f"Evaluation image {i:,}: {lost[0].label}\nThis run: {run_says}\n"
                               f"Dense: {dense_says}\nDouble-click to see it large")
    # double-click (or Enter): the image large, with both networks' most probable classes
    view.grid.itemActivated.emit(first)
    assert view.detail is not None and view.detail.isVisible()
    assert view.detail.picture.pixmap().width() >= 256 and f"This run: {run_says}" in view.detail.text.text()
    view.detail.close()
    # a click on the worst bar: its class's lost images alone, and a way back to all
    bars = window.class_bars
    worst = min(bars.shown, key=lambda c: (c.change.difference, c.label))
    at = bars.getPlotItem().vb.mapViewToScene(QPointF(worst.label, worst.change.difference * 50))
    bars._clicked(type("Click", (), {"scenePos": lambda self: at})())
    assert view.label == worst.label and view.grid.count() == worst.change.b_only
    assert all(c.label == worst.label for c in view.changed) and view.all_button.isVisibleTo(view)
    # Save… writes what is listed (this class's images) as a PNG, in the remembered folder
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: offered.append(a[2]) or (str(tmp_path / "bird"), "")))
    offered: list[str] = []
    assert view.save_button.isEnabled()
    view.save_button.click()
    assert Path(offered[0]).name == f"digits_mlp_lost_{worst.label}.png"
    from PIL import Image

    with Image.open(tmp_path / "bird.png") as sheet:
        assert sheet.format == "PNG" and sheet.height > 64
    assert f"Saved {worst.change.b_only} images to" in window.statusBar().currentMessage()
    # Ctrl+C (or the right-click menu) on the images: the same sheet on the clipboard, for slides
    from PySide6.QtGui import QKeySequence
    from PySide6.QtWidgets import QApplication

    copy = view.grid.actions()[0]
    assert copy.shortcut().matches(QKeySequence(QKeySequence.StandardKey.Copy)) == QKeySequence.SequenceMatch.ExactMatch
    copy.trigger()
    pasted = QApplication.clipboard().image()
    with Image.open(tmp_path / "bird.png") as sheet:
        assert (pasted.width(), pasted.height()) == sheet.size
    assert window.save_changed_images_to(str(tmp_path / "no" / "such.png")) is None
    assert "does not exist" in hooks.errors[-1][1]
    hooks.errors.clear()
    view.all_button.click()
    assert view.label is None and view.grid.count() == min(LIMIT, len(lost))
    view.set_kind("gained")
    assert view.grid.count() == change.a_only and "gained against dense" in view.header.text()
    gained = view.changed[0]  # captioned with what dense said before
    assert view.grid.item(0).text() == f"{gained.label}\nwas {gained.reference_prediction}"
    window.save_settings()
    assert window.settings.value("view/changed_images") == "gained"
    view.set_kind("lost")
    # against magnitude: the images a CHITA run lost where magnitude kept them right
    chita = run_and_wait(qtbot, window, "chita", 90)
    window.class_against.setCurrentIndex(window.class_against.findData("magnitude"))
    versus = paired_difference(chita.eval, chita.magnitude_eval)
    assert len(view.changed) == versus.b_only and "against magnitude" in view.header.text()
    window.class_against.setCurrentIndex(window.class_against.findData("dense"))
    assert len(view.changed) == paired_difference(chita.eval, window.baseline.eval).b_only
    # a run saved by an older version has no predictions: its report is written without the images
    window.outcome = replace(chita, eval=replace(chita.eval, predictions=None))
    assert window.save_report_to(str(tmp_path / "old.md")) == str(tmp_path / "old.md")
    assert not (tmp_path / "old_lost.png").exists() and "![Images lost" not in (tmp_path / "old.md").read_text()
    assert not hooks.errors


def test_classes_tab_compares_with_another_run(qtbot, window: MainWindow, hooks) -> None:
    """The Classes tab's chooser offers the Runs tab's other runs: CHITA against an OBD run at
    the same sparsity, class by class and image by image; the choice is not remembered across
    sessions, and a run that is cleared away gives way to the dense model."""
    from core.class_accuracy import class_scores
    from core.evaluate import paired_difference

    window.settings.setValue("view/classes_against", "dense")
    obd = run_and_wait(qtbot, window, "obd", 85)
    chita = run_and_wait(qtbot, window, "chita", 85)
    box = window.class_against
    assert box.isEnabled() and box.itemText(2) == "run 1: OBD (diagonal Fisher) · 85%" and box.count() == 3  # not run 2, shown
    window.overview_tabs.setCurrentIndex(window.overview_tabs.count() - 1)
    box.setCurrentIndex(2)
    labels = window.bundle.evaluation.y
    want = class_scores(chita.eval, labels, reference=obd.eval)
    assert [s.change for s in window.class_bars.shown] == [s.change for s in want]
    assert window.class_bars.axis_label("left") == "change vs run 1 (points)"
    view = window.changed_view
    assert len(view.changed) == paired_difference(chita.eval, obd.eval).b_only
    assert view.header.text().endswith("lost against run 1")
    assert window.settings.value("view/classes_against") == "dense"  # a run is this session's choice
    window.clear_runs()  # run 1 goes: back to the dense model
    assert box.currentData() == "dense" and box.count() == 2
    assert [s.change for s in window.class_bars.shown] == [
        s.change for s in class_scores(chita.eval, labels, reference=window.baseline.eval)]
    assert not hooks.errors


def test_changed_images_view_without_predictions_or_data(qtbot) -> None:
    """The images strip says what to do where a result has no predictions (a run saved by an
    older version) and shows a hint before any run."""
    import torch

    from core.data import ImageSet
    from core.evaluate import EvalResult
    from gui.changed_images_view import ChangedImagesView

    view = ChangedImagesView()
    qtbot.addWidget(view)
    view.show()
    assert view.grid.count() == 0 and "show here" in view.header.text()
    hits = torch.tensor([True, False, True])
    old = EvalResult(2 / 3, (0.2, 0.9), 0.0, (0.0, 0.0), 3, 2, 0.0, hits)  # no predictions
    dense = EvalResult(1.0, (0.4, 1.0), 0.0, (0.0, 0.0), 3, 3, 0.0, torch.ones(3, dtype=torch.bool))
    images = ImageSet(torch.zeros(3, 1, 8, 8), torch.tensor([0, 1, 2]), "test")
    view.set_data(old, dense, images)
    assert view.grid.count() == 0 and "run it again" in view.header.text()
    with_pred = EvalResult(2 / 3, (0.2, 0.9), 0.0, (0.0, 0.0), 3, 2, 0.0, hits, torch.tensor([0, 2, 2]))
    view.set_data(with_pred, dense, images)
    assert view.grid.count() == 1 and view.grid.item(0).text() == "1\n→ 2"
    # a narrow tab shortens the header with "…" and keeps the whole text
    from PySide6.QtWidgets import QLabel

    view.resize(330, 300)
    qtbot.wait(10)
    assert 0 < view.header.width() < 200 and QLabel.text(view.header).endswith("…") and view.header.text() == "1 image lost against dense"
    view.resize(900, 300)
    qtbot.wait(10)
    assert QLabel.text(view.header) == "1 image lost against dense"


def test_time_the_last_export_against_the_dense_model(qtbot, window: MainWindow, hooks, tmp_path: Path,
                                                     monkeypatch) -> None:
    """File ▸ Time the last export in ONNX Runtime: enabled once a file is exported, it times the
    file and the dense model in alternating rounds in the background and says the ratio; File ▸
    Save run report then includes both; a new model disables it (the file was pruned from the old
    one)."""
    assert not window.act_latency.isEnabled() and not window.act_report.isEnabled()  # no run yet
    chita = run_and_wait(qtbot, window, "chita", 80)
    # a report before any export: the run against dense and magnitude, no file
    text = Path(window.save_report_to(str(tmp_path / "before.md"))).read_text()
    assert "## ONNX file" not in text and "magnitude, same sparsity" in text
    assert f"{100 * chita.eval.accuracy:.2f}%" in text
    with qtbot.waitSignal(window.export_finished, timeout=RUN_TIMEOUT_MS):
        window.export_to(str(tmp_path / "pruned.onnx"))
    assert window.act_latency.isEnabled()
    offered = []  # File ▸ Save run report… offers model_method_sparsity.md and adds the suffix
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: offered.append(a[2]) or (str(tmp_path / "asked"), "")))
    window.act_report.trigger()
    assert Path(offered[0]).name == "digits_mlp_chita_80.md" and (tmp_path / "asked.md").is_file()
    with qtbot.waitSignal(window.latency_finished, timeout=RUN_TIMEOUT_MS) as blocker:
        window.act_latency.trigger()
    pruned, dense = blocker.args[0]
    assert pruned.batch == dense.batch == 1 and pruned.runs == dense.runs > 0
    title, text = hooks.infos[-1]
    assert title == "Time in ONNX Runtime" and str(tmp_path / "pruned.onnx") in text
    assert f"{pruned.median_ms / dense.median_ms:.2f}× the dense model's time" in text
    assert "ms per image in ONNX Runtime" in window.statusBar().currentMessage()
    # the run's report names the file and its time there, and compares with magnitude and dense
    assert window.act_report.isEnabled()
    text = Path(window.save_report_to(str(tmp_path / "run.md"))).read_text()
    assert "## ONNX file" in text and str(tmp_path / "pruned.onnx") in text
    assert "![Images lost against dense](run_lost.png)" in text and (tmp_path / "run_lost.png").is_file()
    assert f"the dense model {dense.median_ms:.3g} ms in the same rounds" in text
    assert "## Classes" in text and "Change against dense:" in text
    with qtbot.waitSignal(window.ready, timeout=LOAD_TIMEOUT_MS):
        window.load_demo("digits_cnn")
    assert window.last_export is None and not window.act_latency.isEnabled()
    assert not hooks.errors


def test_class_bars_with_many_classes_draw_those_that_lost_most(qtbot) -> None:
    """With more than ClassBars.MAX_BARS classes (ImageNet's 1000) the bars are the classes that
    lost most, worst first, labelled by number where the names would not fit."""
    from core.class_accuracy import class_scores
    from core.evaluate import EvalResult
    from gui.plots import ClassBars

    gen = torch.Generator().manual_seed(0)
    y = torch.arange(100).repeat_interleave(20)
    dense_hits = torch.ones(2000, dtype=torch.bool)
    lost = torch.rand(2000, generator=gen) < y.float() / 200  # class c loses about c/2 % of its images
    ev = lambda h: EvalResult(float(h.float().mean()), (0.0, 1.0), 0.0, (0.0, 0.0), 2000, int(h.sum()), 0.0, h)  # noqa: E731
    names = [f"a rather long class name {c}" for c in range(100)]
    scores = class_scores(ev(dense_hits & ~lost), y, reference=ev(dense_hits), names=names)
    bars = ClassBars()
    qtbot.addWidget(bars)
    bars.set_data(scores, -float(lost.float().mean()), "test")
    assert len(bars.shown) == ClassBars.MAX_BARS
    changes = [s.change.difference for s in bars.shown]
    assert changes == sorted(changes) and changes[0] == min(s.change.difference for s in scores)
    ticks = bars.getPlotItem().getAxis("bottom")._tickLevels[0]
    assert [t for _, t in ticks] == [str(s.label) for s in bars.shown]  # numbers, not the long names
    assert "the 30 of 100 classes that lost most" in bars.axis_label("bottom")
    # ten CIFAR-10 names: whole where the bars are wide enough, shortened with … where not
    ten = class_scores(ev(dense_hits[:200] & ~lost[:200]), y[:200] % 10, reference=ev(dense_hits[:200]),
                       names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"))
    bars.resize(1400, 300)
    bars.show()
    qtbot.waitExposed(bars)
    bars.set_data(ten, None, "test")
    wide = [t for _, t in bars.getPlotItem().getAxis("bottom")._tickLevels[0]]
    assert wide[:2] == ["airplane", "automobile"]
    bars.resize(500, 300)  # a resize draws again: every other name a line lower, whole
    narrow = [t for _, t in bars.getPlotItem().getAxis("bottom")._tickLevels[0]]
    assert narrow[:3] == ["airplane", "\nautomobile", "bird"] and narrow[9] == "\ntruck"
    bars.resize(330, 300)  # two rows, and still shortened with …
    staggered = [t for _, t in bars.getPlotItem().getAxis("bottom")._tickLevels[0]]
    assert staggered[1].startswith("\naut") and staggered[1].endswith("…") and staggered[2] == "bird"
    bars.resize(250, 300)  # too narrow for even "air…" on two rows: the class numbers
    assert [t for _, t in bars.getPlotItem().getAxis("bottom")._tickLevels[0]][:3] == ["0", "1", "2"]
    bars.set_data(())
    assert not bars.shown and bars._message.text() == ClassBars.HINT  # cleared, the hint back


def test_class_names_given_with_the_data_are_shown_and_remembered(qtbot, window: MainWindow, hooks) -> None:
    """Choose data ▸ Class names names the labels of data that does not (the Classes tab shows
    them), is remembered for that source, and a list too short for the labels is refused with
    the field named, keeping the data loaded before."""
    from gui.data_dialog import DataDialog

    dlg = DataDialog(None, "digits", None, "a,b")
    qtbot.addWidget(dlg)
    assert dlg.choice() == ("digits", None, "a,b")
    names = ",".join(f"digit {i}" for i in range(10))
    with qtbot.waitSignal(window.ready, timeout=LOAD_TIMEOUT_MS):
        window.load_data("digits", None, names)
    assert window.bundle.evaluation.class_names == tuple(f"digit {i}" for i in range(10))
    assert window._class_names_for("digits") == names
    qtbot.waitUntil(lambda: bool(window.class_bars.shown), timeout=RUN_TIMEOUT_MS)  # the preview's classes
    assert [s.name for s in window.class_bars.shown][:2] == ["digit 0", "digit 1"]
    before = window.bundle
    window.load_data("digits", None, "a,b,c")
    qtbot.waitUntil(lambda: bool(hooks.errors), timeout=LOAD_TIMEOUT_MS)
    assert "3 class names given, but the labels go up to 9" in hooks.errors[-1][1]
    assert window.bundle is before and window._class_names_for("digits") == names  # nothing lost


def test_a_model_that_names_its_classes_names_data_given_by_wordnet_ids(qtbot, window: MainWindow) -> None:
    """Data whose classes are WordNet IDs (ImageNet's folders) takes the names a model's weights
    give (torchvision's), when the data is loaded and when such a model is opened on it."""
    qtbot.waitUntil(lambda: window.bundle is not None and window.session is not None, timeout=LOAD_TIMEOUT_MS)
    ids = tuple(f"n{i:08d}" for i in range(10))
    words = tuple(f"word {i}" for i in range(10))
    b = window.bundle
    by_ids = replace(b, calibration=replace(b.calibration, class_names=ids),
                     evaluation=replace(b.evaluation, class_names=ids))
    window._set_bundle(by_ids)  # a model without names: the IDs stay
    assert window.bundle.evaluation.class_names == ids
    session = window.session
    with qtbot.waitSignal(window.ready, timeout=LOAD_TIMEOUT_MS):
        window._set_session(replace(session, loaded=replace(session.loaded, class_names=words)))
    assert window.bundle.evaluation.class_names == words and window.bundle.calibration.class_names == words
    with qtbot.waitSignal(window.ready, timeout=LOAD_TIMEOUT_MS):
        window._set_bundle(by_ids)  # loaded again under the naming model
    assert window.bundle.evaluation.class_names == words


def test_compare_with_a_model_file_scores_it_against_dense_and_the_run(qtbot, window: MainWindow, hooks,
                                                                      tmp_path: Path) -> None:
    """File ▸ Compare with a model file: an exported pruned file, scored on the same evaluation
    images in the background, against the dense model (its run's change exactly) and the run shown
    (no difference, every image classified alike); a file that does not fit is an error dialog."""
    assert window.act_compare_file.isEnabled() == (window.baseline is not None)  # needs the dense scores
    run = run_and_wait(qtbot, window, "magnitude", 85)
    with qtbot.waitSignal(window.export_finished, timeout=RUN_TIMEOUT_MS):
        window.export_to(str(tmp_path / "m85.onnx"))
    assert window.act_compare_file.isEnabled()
    with qtbot.waitSignal(window.file_compared, timeout=RUN_TIMEOUT_MS) as blocker:
        window.compare_with_file(str(tmp_path / "m85.onnx"))
    source, ev, zeros = blocker.args[0]
    assert ev.accuracy == run.eval.accuracy and torch.equal(ev.hits, run.eval.hits)
    assert zeros > 0.8
    title, text = hooks.infos[-1]
    d = paired_difference(run.eval, window.baseline.eval)
    assert title == "Compared with a model file" and f"Against the dense model: {d.describe()}" in text
    assert "Against the run shown (Magnitude (global) · 85%): +0.00 points" in text
    assert "the same class to 100.00% of the images" in text and "Classes against the dense model:" in text
    # a model for other images: an error dialog that says why, and the run shown stays
    other = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10)).eval()
    from core.export import export_onnx
    export_onnx(other, torch.randn(2, 3, 32, 32), tmp_path / "cifar_shaped.onnx")
    errors = len(hooks.errors)
    window.compare_with_file(str(tmp_path / "cifar_shaped.onnx"))
    qtbot.waitUntil(lambda: len(hooks.errors) > errors, timeout=RUN_TIMEOUT_MS)
    assert window.outcome is run
