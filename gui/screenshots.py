"""Render the documentation screenshots: ``python -m gui.screenshots docs/screenshots``.

Drives one window through the main states on the built-in digits demo (settings in a temporary
folder): demo loaded, after a CHITA run, after "Refine result" on a CHITA run at 95%, the sweep view, and
presentation mode in the dark theme, and presentation mode on a 1280×720 projector.
Run it under a display (``xvfb-run -s "-screen 0 1600x1000x24" ...``) or offscreen.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QEventLoop, QSettings, QTimer

STATES = ("main", "run", "refined", "sweep", "presentation", "projector")


def _wait(signal, timeout_s: float = 600) -> bool:
    loop = QEventLoop()
    state = {"ok": False}

    def done(*_a) -> None:
        state["ok"] = True
        loop.quit()

    signal.connect(done)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()
    signal.disconnect(done)
    return state["ok"]


def _settle(window, ms: int = 600) -> None:
    if window.runner.running():
        _wait(window.idle, 300)
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def main(argv: list[str] | None = None) -> int:
    """Write the PNGs; returns 0 on success."""
    parser = argparse.ArgumentParser(description="CHITA Studio documentation screenshots")
    parser.add_argument("outdir", nargs="?", default="docs/screenshots")
    parser.add_argument("--demo", default="digits_mlp")
    parser.add_argument("--states", default=",".join(STATES))
    parser.add_argument("--size", default="1600x1000")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    states = [s.strip() for s in args.states.split(",") if s.strip()]
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)

    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, tempfile.mkdtemp(prefix="chita-shots-"))
    from gui import dialogs
    from gui.app import make_app
    from gui.main_window import MainWindow
    from gui.settings import make_settings

    app = make_app()
    errors: list[str] = []
    dialogs.ERROR_HOOK = lambda title, text, details: errors.append(f"{title}: {text}\n{details}")
    dialogs.INFO_HOOK = lambda title, text: None
    window = MainWindow(make_settings())
    window.resize(width, height)
    window.show()
    window.controls.autorun.setChecked(False)
    window.controls.set_method("chita")
    window.controls.samples.setValue(512)
    window.controls.set_sparsity(0.8)
    window.start(demo=args.demo)
    if not _wait(window.ready) or errors:
        print("not ready:", *errors, sep="\n", file=sys.stderr)
        return 1

    def shot(name: str) -> None:
        _settle(window)
        path = out / f"{name}.png"
        window.grab().save(str(path))
        print(f"wrote {path}")

    prunable = window.session.summary.prunable_keys
    if "main" in states:
        window.table.select_key(prunable[0])
        shot("main")
    if "run" in states or "presentation" in states:
        window.run_pruning()
        if not _wait(window.run_finished) or errors:
            print("run failed:", *errors, sep="\n", file=sys.stderr)
            return 1
        window.overview_tabs.setCurrentWidget(window.sparsity_bars)
        window.table.select_key(prunable[min(1, len(prunable) - 1)])
        if "run" in states:
            shot("after_run")
    if "refined" in states:  # a CHITA run at 95%, then "Refine result" on it (3 steps)
        window.controls.set_sparsity(0.95)
        window.run_pruning()
        if not _wait(window.run_finished) or errors:
            print("run at 95% failed:", *errors, sep="\n", file=sys.stderr)
            return 1
        window.refine_last_run()
        if not _wait(window.run_finished) or not _wait(window.comparison_finished) or errors:
            print("refining failed:", *errors, sep="\n", file=sys.stderr)
            return 1
        _settle(window)  # the new caption's height first, then the scroll range
        bar = window.sidebar_scroll.verticalScrollBar()
        bar.setValue(bar.maximum())  # the caption at the bottom of the preview
        shot("after_refine")
        bar.setValue(0)
        window.controls.set_sparsity(0.8)
        _settle(window, 1500)  # let the preview that the slider schedules run before going on
    if "sweep" in states:
        window.sweep_view.sparsities.setText("30, 50, 70, 80, 90, 95")
        for m, box in window.sweep_view.method_boxes.items():
            box.setChecked(m in ("chita", "magnitude", "obd"))
        window.sweep_view.samples.setValue(512)
        window.sweep_view.run_button.click()
        if not _wait(window.sweep_finished) or errors:
            print("sweep failed:", *errors, sep="\n", file=sys.stderr)
            return 1
        shot("sweep")
        window.tabs.setCurrentIndex(0)
    if "presentation" in states:
        window.tabs.setCurrentIndex(0)
        window.set_dark(True)
        window.set_presentation(True)
        shot("presentation_dark")
        window.set_presentation(False)
        window.set_dark(False)
    if "projector" in states:  # presentation mode full screen on a 1280×720 projector
        window.tabs.setCurrentIndex(0)
        window.set_presentation(True)
        _settle(window)
        window.showNormal()  # the screen here may be larger: the window as a 1280×720 one shows it
        window.setGeometry(0, 0, 1280, 720)
        _settle(window, 1000)
        shot("presentation_1280x720")
        window.set_presentation(False)
        window.resize(width, height)
    window.close()
    app.processEvents()
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
