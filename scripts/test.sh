#!/usr/bin/env bash
# Run CHITA Studio's tests: sets up .venv if needed (scripts/setup.sh), then runs pytest with Qt
# rendering off-screen (no display needed). Arguments go to pytest, with paths relative to the
# repository root, e.g.
#   scripts/test.sh                         everything
#   scripts/test.sh tests/test_cli.py -x    one file, stop at the first failure
#   scripts/test.sh -m "not slow"           skip the slow tests
# The exit code is pytest's. Tests marked "shared" need ../shared beside the checkout.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
export QT_QPA_PLATFORM=offscreen
exec "$ROOT/.venv/bin/python" -m pytest -q "$@"
