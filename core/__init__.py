"""CHITA Studio core: headless model/data loading, pruning, evaluation and ONNX export.

Nothing in this package imports Qt; every capability works from Python and from the CLI.
"""

__version__ = "0.1.0"
