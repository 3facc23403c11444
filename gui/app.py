"""Application entry: ``run_app(args)`` is what ``chita-studio`` (no subcommand) calls."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from gui import dialogs
from gui.settings import APPLICATION, ORGANIZATION

SCREENSHOT_SIZE = (1600, 1000)
SCREENSHOT_TIMEOUT_S = 600


def make_app() -> QApplication:
    """The QApplication (created once), with the organisation/app names QSettings uses."""
    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName(APPLICATION)
    return app  # type: ignore[return-value]


def run_app(args: Any = None) -> int:
    """Open the main window; with ``args.screenshot`` render it once loaded, save the PNG, exit 0.

    ``args`` (an argparse Namespace or None) may carry ``screenshot``, ``demo``, ``model``,
    ``data``, ``arch`` and ``preset``; missing attributes take their defaults.
    """
    screenshot = getattr(args, "screenshot", None)
    demo = getattr(args, "demo", None) or "digits_mlp"
    model = getattr(args, "model", None)
    data = getattr(args, "data", None)
    arch = getattr(args, "arch", None)
    preset = getattr(args, "preset", None)

    app = make_app()
    from gui.main_window import MainWindow
    from gui.theme import app_icon

    app.setWindowIcon(app_icon())
    window = MainWindow()
    dialogs.install_excepthook(lambda: window)
    status = {"code": 0}
    questions: dict[str, Any] = {}  # the dialogs' question functions, while a screenshot run replaces them

    if screenshot:
        def no_one_to_answer(parent: Any, title: str, text: str, *more: Any, **kw: Any) -> None:
            # a screenshot run has no one to ask (an architecture, a pickle's consent): say what
            # was asked and stop, instead of waiting for the timeout behind a modal dialog
            print(f'screenshot: the app asked "{title}" and no one can answer here: '
                  f"{' '.join(str(text).split())}", file=sys.stderr)
            status["code"] = 1
            app.exit(1)

        questions.update(ask_item=dialogs.ask_item, ask_yes_no=dialogs.ask_yes_no)
        dialogs.ask_item = dialogs.ask_yes_no = no_one_to_answer
        def headless_error(title: str, text: str, details: str) -> None:
            print(f"{title}: {text}\n{details}", file=sys.stderr)
            status["code"] = 1
            app.exit(1)

        dialogs.ERROR_HOOK = headless_error
        dialogs.INFO_HOOK = lambda title, text: None
        window.persist = False  # neither the user's settings nor their saved runs are touched
        window.act_presentation.setChecked(False)
        window.apply_theme()
        window.resize(*SCREENSHOT_SIZE)
        window.show()
        take_screenshot_when_ready(window, str(screenshot), status)
    else:
        window.show_for_settings()
    QTimer.singleShot(0, lambda: window.start(demo=demo, model=model, data=data, arch=arch, preset=preset))
    try:
        code = app.exec()
    finally:
        for name, ask in questions.items():
            setattr(dialogs, name, ask)
    if screenshot:
        window.close()
    return status["code"] or code


def take_screenshot_when_ready(window: Any, path: str, status: dict[str, int] | None = None,
                               timeout_s: float = SCREENSHOT_TIMEOUT_S) -> None:
    """Once the window is ready and idle, grab it into ``path`` and quit the app."""
    app = QApplication.instance()
    status = status if status is not None else {"code": 0}
    state = {"ready": False, "done": False}

    def shoot() -> None:
        if state["done"]:
            return
        if window.runner.running():
            QTimer.singleShot(200, shoot)
            return
        state["done"] = True
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        ok = window.grab().save(path)
        print(f"screenshot: {path}" if ok else f"could not write {path}", file=sys.stdout if ok else sys.stderr)
        status["code"] = status["code"] or (0 if ok else 1)
        app.exit(status["code"])

    def on_ready() -> None:
        state["ready"] = True
        QTimer.singleShot(400, shoot)

    def on_timeout() -> None:
        if not state["done"]:
            print(f"screenshot: the window was not ready after {timeout_s:.0f} s", file=sys.stderr)
            status["code"] = 1
            app.exit(1)

    def on_idle() -> None:
        # nothing left to load and still no data: the model needs data the command line did not give
        if state["ready"] or state["done"] or window.session is None or window.bundle is not None:
            return
        state["done"] = True
        print("screenshot: the model is open but has no data to show; give it with --data DATA",
              file=sys.stderr)
        status["code"] = 1
        app.exit(1)

    window.ready.connect(on_ready)
    window.idle.connect(on_idle)
    QTimer.singleShot(int(timeout_s * 1000), on_timeout)


def main(argv: list[str] | None = None) -> int:
    """``python -m gui.app [--screenshot FILE] [--demo NAME] [--model PATH --arch NAME] [--data PATH]``."""
    parser = argparse.ArgumentParser(prog="python -m gui.app", description="CHITA Studio window")
    parser.add_argument("--screenshot", help="render the window once loaded into this PNG and exit")
    parser.add_argument("--demo", default=None, help="built-in demo model (digits_mlp, digits_cnn)")
    parser.add_argument("--model", default=None, help="model file to open")
    parser.add_argument("--arch", default=None, help="architecture for a state_dict model")
    parser.add_argument("--data", default=None, help="data source (digits, a folder or a file)")
    parser.add_argument("--preset", default=None, help="normalisation preset")
    return run_app(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
