"""UI responsiveness while CHITA runs in the GUI's own background worker.

Starts the main window (offscreen unless a display is set), loads ResNet20 and CIFAR-10 from
../shared, runs CHITA at 70% sparsity with 1000 gradient samples through the window's worker
(exactly as Ctrl+R does), and meanwhile lets a 10 ms QTimer tick on the UI thread. The largest
gap between two ticks is the longest time the window could not repaint or react.

    .venv/bin/python benchmarks/ui_latency.py                 # torch's default thread count
    .venv/bin/python benchmarks/ui_latency.py --threads 1     # leave one core to the UI
    .venv/bin/python benchmarks/ui_latency.py --refine        # then "Refine result" (3 steps)

Prints a table: run seconds, ticks, p50/p99/max gap (ms) against the 100 ms target. With
``--refine`` a second row times "Refine result" until the refined run is shown, and a third the
background baseline (magnitude refined as many steps) until its comparison line is in.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import core  # noqa: F401  (first: the OpenMP wait policy the app runs with, set before torch loads)

# isort: split
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PySide6.QtCore import QEventLoop, QSettings, QTimer  # noqa: E402

TARGET_MS = 100.0
TICK_MS = 10
SHARED = ROOT.parent / "shared"


def wait_for(signal, timeout_s: float) -> bool:
    """Run the event loop until ``signal`` fires (True) or the timeout passes (False)."""
    loop = QEventLoop()
    fired = {"ok": False}

    def done(*_args) -> None:
        fired["ok"] = True
        loop.quit()

    signal.connect(done)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()
    signal.disconnect(done)
    return fired["ok"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(SHARED / "models" / "resnet20_cifar10.pt"))
    parser.add_argument("--arch", default="resnet20")
    parser.add_argument("--data", default=str(SHARED / "data" / "cifar10"))
    parser.add_argument("--preset", default="resnet20")
    parser.add_argument("--method", default="chita")
    parser.add_argument("--sparsity", type=float, default=0.7)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave torch's default)")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--refine", action="store_true", help="also time Refine result and its baseline")
    args = parser.parse_args(argv)

    if not Path(args.model).exists():
        print(f"skipped: {args.model} not found (needs ../shared)", file=sys.stderr)
        return 0
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    settings_dir = tempfile.mkdtemp(prefix="chita-studio-bench-")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, settings_dir)

    from gui import dialogs
    from gui.app import make_app
    from gui.main_window import MainWindow
    from gui.settings import make_settings

    _app = make_app()  # keep the QApplication alive for the whole run
    errors: list[str] = []

    def on_error(title: str, text: str, details: str) -> None:
        errors.append(f"{title}: {text}\n{details}")

    dialogs.ERROR_HOOK = on_error
    dialogs.INFO_HOOK = lambda title, text: None
    window = MainWindow(make_settings())
    window.resize(1600, 1000)
    window.show()

    t0 = time.perf_counter()
    window.start(model=args.model, arch=args.arch, data=args.data, preset=args.preset)
    if not wait_for(window.ready, args.timeout) or errors:
        print("the window did not get ready:\n" + "\n".join(errors), file=sys.stderr)
        return 1
    load_s = time.perf_counter() - t0
    window.controls.autorun.setChecked(False)
    window.controls.set_method(args.method)
    window.controls.samples.setValue(args.samples)
    window.controls.set_sparsity(args.sparsity)
    wait_for(window.preview_updated, 60)  # the slider's magnitude preview
    if window.runner.running():
        wait_for(window.idle, 120)

    def timed(action, *signals) -> tuple[list[float], np.ndarray] | None:
        """Call ``action``, tick every 10 ms on the UI thread until each of ``signals`` has fired
        in turn; the seconds to each, and the gaps between ticks (ms)."""
        ticks: list[float] = []
        timer = QTimer()
        timer.setInterval(TICK_MS)
        timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
        timer.start()
        start = time.perf_counter()
        ticks.append(start)
        action()
        marks = []
        for signal in signals:
            if not wait_for(signal, args.timeout) or errors:
                timer.stop()
                return None
            marks.append(time.perf_counter() - start)
        timer.stop()
        ticks.append(time.perf_counter())
        return marks, np.diff(np.array(ticks)) * 1000.0

    measured = timed(window.run_pruning, window.run_finished)
    if measured is None:
        print("the run did not finish:\n" + "\n".join(errors), file=sys.stderr)
        return 1
    rows = [("run", measured[0][0], measured[1])]
    outcome = window.outcome
    if args.refine:
        refined = timed(window.refine_last_run, window.run_finished, window.comparison_finished)
        if refined is None:
            print("the refinement did not finish:\n" + "\n".join(errors), file=sys.stderr)
            return 1
        rows.append(("Refine result, until shown", refined[0][0], refined[1]))
        rows.append(("… and its baseline, until compared", refined[0][1], refined[1]))
    threads = torch.get_num_threads()
    print(f"model {Path(args.model).name} ({args.arch}), data {Path(args.data).name}, loaded in {load_s:.1f} s; "
          f"torch threads {threads}, cores {os.cpu_count()}")
    print(f"{args.method} at {100 * args.sparsity:.0f}% with {args.samples} samples: accuracy "
          f"{100 * outcome.eval.accuracy:.1f}% (dense {100 * window.baseline.eval.accuracy:.1f}%)"
          + (f"; refined {100 * window.outcome.eval.accuracy:.1f}%" if args.refine else ""))
    print()
    print("| what | s | ticks | p50 gap ms | p99 gap ms | max gap ms | target ms | verdict |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for what, secs, gaps in rows:
        p50, p99, worst = np.percentile(gaps, 50), np.percentile(gaps, 99), gaps.max()
        print(f"| {what} | {secs:.1f} | {len(gaps)} | {p50:.1f} | {p99:.1f} | {worst:.1f} | {TARGET_MS:.0f} | "
              f"{'ok' if worst <= TARGET_MS else 'over'} |")
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
