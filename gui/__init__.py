"""CHITA Studio desktop front end (PySide6 + pyqtgraph) over :mod:`core`.

``gui`` only builds core requests, runs core callables in background workers and renders their
results; it never reaches into the pruning algorithms. Entry point: :func:`gui.app.run_app`.
"""

import sys

import PySide6

import core  # noqa: F401  (before any torch import: sets the OpenMP wait policy, see core)

if PySide6.__version__ == "6.12.0" and sys.version_info < (3, 12):
    # PySide6 6.12.0 returns None/True/False from void methods and signals without a reference,
    # which is only safe for the immortal singletons of Python 3.12+: on 3.11 the process aborts
    # ("Fatal Python error: none_dealloc") after a few thousand calls.
    raise ImportError(
        "PySide6 6.12.0 crashes on Python 3.11 (it drops references to None). "
        "Install the pinned version: pip install -c requirements.lock PySide6-Essentials, "
        "or run scripts/setup.sh."
    )
