#!/usr/bin/env bash
# Run CHITA Studio's tests: sets up .venv if needed (scripts/setup.sh), then runs pytest with Qt
# rendering off-screen (no display needed). Arguments go to pytest, with paths relative to the
# repository root, e.g.
#   scripts/test.sh                         everything
#   scripts/test.sh tests/test_cli.py -x    one file, stop at the first failure
#   scripts/test.sh -m "not slow"           skip the slow tests
# The exit code is pytest's. Tests marked "shared" need ../shared beside the checkout.
# A run longer than CHITA_TEST_TIMEOUT seconds (default 1800; the suite takes 1-2 min) is stopped
# with exit code 124, so a hang fails instead of waiting; a test over 5 min first dumps its stacks.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
export QT_QPA_PLATFORM=offscreen
exec timeout "${CHITA_TEST_TIMEOUT:-1800}" "$ROOT/.venv/bin/python" -m pytest -q "$@"
