"""Start CHITA Studio: ``python main.py`` is the same as ``chita-studio``."""

import sys

from core.cli import main

if __name__ == "__main__":
    sys.exit(main())
