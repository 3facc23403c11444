#!/usr/bin/env bash
# Set up CHITA Studio in this checkout: .venv with the pinned dependencies (requirements.lock)
# and the project installed editable with its test extras.
#
# Idempotent and quick when nothing changed: pip runs only when requirements.lock,
# pyproject.toml or the Python version differ from the last successful install (a stamp file
# in .venv). Upgrades nothing it does not have to (not even pip).
#
# Environment:
#   PYTHON=python3.11        interpreter used to create .venv (needs >= 3.10; default: python3,
#                            or python3.11 when python3 is another version)
#   CHITA_SETUP_FORCE=1      run pip even if the stamp matches
#   CHITA_SETUP_NO_APT=1     never run apt-get; only print which system libraries are missing
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="$ROOT/.venv"
VPY="$VENV/bin/python"
STAMP="$VENV/.chita-setup-stamp"
LOCK="$ROOT/requirements.lock"
# The pins in requirements.lock are for CPython 3.11 (what CI runs). Without PYTHON=, use python3
# if it is 3.11, else python3.11 if installed, else python3 (any >= 3.10, with a warning).
if [ -z "${PYTHON:-}" ]; then
    PYTHON=python3
    if ! python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' >/dev/null 2>&1 \
        && command -v python3.11 >/dev/null 2>&1; then
        PYTHON=python3.11
    fi
fi

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# 1. System libraries that Qt (PySide6) needs, also for QT_QPA_PLATFORM=offscreen.
#    Checked by soname with ldconfig (fast, distro-neutral); installed with apt-get only when
#    running as root on a Debian/Ubuntu system, otherwise the command to run is printed.
# ---------------------------------------------------------------------------------------------
# soname:debian-package
QT_OFFSCREEN_LIBS=(
    libEGL.so.1:libegl1
    libGL.so.1:libgl1
    libxkbcommon.so.0:libxkbcommon0
    libfontconfig.so.1:libfontconfig1
    libfreetype.so.6:libfreetype6
    libdbus-1.so.3:libdbus-1-3
    libglib-2.0.so.0:libglib2.0-0
)
# Needed only to show windows on an X11 display (the "xcb" platform, also under xvfb-run).
QT_XCB_LIBS=(
    libX11-xcb.so.1:libx11-xcb1
    libxkbcommon-x11.so.0:libxkbcommon-x11-0
    libxcb-cursor.so.0:libxcb-cursor0
    libxcb-icccm.so.4:libxcb-icccm4
    libxcb-image.so.0:libxcb-image0
    libxcb-keysyms.so.1:libxcb-keysyms1
    libxcb-randr.so.0:libxcb-randr0
    libxcb-render-util.so.0:libxcb-render-util0
    libxcb-shape.so.0:libxcb-shape0
    libxcb-xkb.so.1:libxcb-xkb1
)

check_system_libs() {
    [ "$(uname -s)" = Linux ] || return 0
    local ldcache
    ldcache="$( (ldconfig -p || /sbin/ldconfig -p) 2>/dev/null || true)"
    [ -n "$ldcache" ] || return 0   # cannot tell; do not guess
    local wanted=("${QT_OFFSCREEN_LIBS[@]}")
    if [ -n "${DISPLAY:-}" ]; then wanted+=("${QT_XCB_LIBS[@]}"); fi
    local missing=() entry
    for entry in "${wanted[@]}"; do
        grep -qF "${entry%%:*} " <<<"$ldcache" || missing+=("${entry##*:}")
    done
    # Fonts: without any, Qt draws no text (and warns).
    if command -v fc-list >/dev/null 2>&1 && [ -z "$(fc-list 2>/dev/null | head -n 1)" ]; then
        missing+=(fonts-dejavu-core)
    fi
    [ ${#missing[@]} -eq 0 ] && return 0

    local cmd="apt-get install -y --no-install-recommends ${missing[*]}"
    if [ "$(id -u)" = 0 ] && [ -z "${CHITA_SETUP_NO_APT:-}" ] && command -v apt-get >/dev/null 2>&1; then
        say "installing system libraries for Qt: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        if apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; then
            return 0
        fi
        say "WARNING: apt-get could not install ${missing[*]}; the desktop app and GUI tests need them."
    else
        say "WARNING: system libraries that Qt (PySide6) needs are missing: ${missing[*]}"
        local sudo="sudo "; [ "$(id -u)" = 0 ] && sudo=""
        say "  On Debian/Ubuntu install them with:  ${sudo}apt-get update && ${sudo}$cmd"
        say "  (other distributions: the packages providing those libraries). The headless"
        say "  commands (chita-studio info/eval/export/prune/sweep) work without them."
    fi
}

# ---------------------------------------------------------------------------------------------
# 2. Python and the virtual environment
# ---------------------------------------------------------------------------------------------
python_ok() {  # $1 = interpreter; true if it runs and is >= 3.10
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' >/dev/null 2>&1
}

if [ ! -x "$VPY" ]; then
    command -v "$PYTHON" >/dev/null 2>&1 \
        || die "'$PYTHON' was not found. Install Python 3.10 or newer (3.11 is what CHITA Studio is tested with), or point PYTHON= at one, e.g. PYTHON=python3.11 $0"
    if ! python_ok "$PYTHON"; then
        found="$("$PYTHON" -c 'import sys; print(sys.version.split()[0])' 2>/dev/null || echo unknown)"
        die "CHITA Studio needs Python 3.10 or newer, but '$PYTHON' is Python $found. Install a newer Python and run again with PYTHON=python3.11 (or similar) $0"
    fi
    if [ -e "$VENV" ]; then
        die "$VENV exists but has no working bin/python (an interrupted setup?). Remove it (rm -rf .venv) and run $0 again."
    fi
    say "creating .venv with $("$PYTHON" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' >/dev/null 2>&1; then
        say "WARNING: requirements.lock was tested with Python 3.11; with this version some pinned"
        say "  versions may have no wheels. If pip fails, install Python 3.11 and run: rm -rf .venv; PYTHON=python3.11 $0"
    fi
    if ! "$PYTHON" -m venv "$VENV"; then
        rm -rf "$VENV"
        die "'$PYTHON -m venv' failed. On Debian/Ubuntu install the venv module: sudo apt-get install python3-venv"
    fi
fi

python_ok "$VPY" || die "$VPY does not run or is older than Python 3.10. Remove .venv (rm -rf .venv) and run $0 again (with PYTHON= pointing at Python >= 3.10)."

# Serialise concurrent setups (e.g. scripts/app.sh and scripts/test.sh started together).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$VENV/.chita-setup.lock"
    flock 9
fi

check_system_libs

# ---------------------------------------------------------------------------------------------
# 3. Dependencies: skip pip when the stamp matches
# ---------------------------------------------------------------------------------------------
[ -f "$LOCK" ] || die "requirements.lock is missing from $ROOT"
want="$(
    {
        cat "$LOCK" pyproject.toml
        "$VPY" -c 'import sys; print(sys.version)'
    } | "$VPY" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())'
)"
if [ -z "${CHITA_SETUP_FORCE:-}" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] \
    && [ -x "$VENV/bin/chita-studio" ]; then
    exit 0   # up to date
fi

say "installing pinned dependencies and CHITA Studio (editable, with test extras) into .venv"
say "(the first time this installs torch and takes a few minutes)"
start=$SECONDS
rm -f "$STAMP"
"$VPY" -m pip --version >/dev/null 2>&1 \
    || die ".venv has no pip (an interrupted setup?). Remove it (rm -rf .venv) and run $0 again."
pip_args=(install --disable-pip-version-check --no-input -c "$LOCK" -e ".[test]")
if [ -n "${CI:-}" ] || [ ! -t 1 ]; then pip_args+=(--progress-bar off); fi
"$VPY" -m pip "${pip_args[@]}" \
    || die "pip failed (see its messages above; the first 'error:' line says why). Fix that and run $0 again; nothing is marked as installed until pip succeeds."

# Catch a wrong pairing early (torchvision built for another torch fails only at import).
"$VPY" - <<'PY' || die "the installed packages do not import together (see above). Remove .venv (rm -rf .venv) and run setup again."
import torch, torchvision, numpy, sklearn, onnx, onnxruntime  # noqa: F401
print(f"setup: torch {torch.__version__}, torchvision {torchvision.__version__}, numpy {numpy.__version__}")
PY

echo "$want" >"$STAMP"
say "done in $((SECONDS - start)) s"
