"""CHITA Studio core: headless model/data loading, pruning, evaluation and ONNX export.

Nothing in this package imports Qt; every capability works from Python and from the CLI.

Importing it sets ``OMP_WAIT_POLICY=PASSIVE`` unless the environment already sets it, before
torch loads its OpenMP runtime (libgomp reads the variable once, when it loads; an import of
torch before this package leaves torch's default). Passive waiting lets OpenMP threads that
run out of work sleep at once instead of spinning: with another process keeping one of two
cores busy, a pruning run took 0.55–0.75× the seconds of the default spinning, and 1.00–1.11×
on an idle machine (``benchmarks/busy_machine.py``, docs/benchmarks.md,
"Runs on a busy machine"). The thread count, and so every result, is unchanged.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
