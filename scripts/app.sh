#!/usr/bin/env bash
# Run CHITA Studio: sets up .venv if needed (scripts/setup.sh), then runs `chita-studio`.
#
#   scripts/app.sh                                  the desktop app (built-in demo)
#   scripts/app.sh --demo digits_cnn                the desktop app on another demo model
#   scripts/app.sh --screenshot shot.png            save a screenshot of the window and exit
#   scripts/app.sh info|eval|export|prune|sweep ... the headless commands (see --help)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"

# Does this invocation open a window? Not for a subcommand, --help or --version.
opens_window=1
screenshot=0
for arg in "$@"; do
    case "$arg" in
        -h | --help | --version | info | eval | export | prune | sweep) opens_window=0; break ;;
        --screenshot | --screenshot=*) screenshot=1 ;;
    esac
done

if [ "$opens_window" = 1 ] && [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ] \
    && [ -z "${QT_QPA_PLATFORM:-}" ] && [ "$(uname -s)" = Linux ]; then
    if [ "$screenshot" = 1 ]; then
        # A screenshot needs no screen: render off-screen.
        echo "app: no display found; rendering off-screen (QT_QPA_PLATFORM=offscreen) for --screenshot" >&2
        export QT_QPA_PLATFORM=offscreen
    else
        args=""; [ $# -eq 0 ] || args="$(printf ' %q' "$@")"
        cat >&2 <<EOF
app: no display found (\$DISPLAY and \$WAYLAND_DISPLAY are empty), so the desktop app cannot open a window.
  - On a machine without a screen, run it in a virtual X server:
        xvfb-run -a $0$args
    (Debian/Ubuntu: sudo apt-get install xvfb)
  - Or save a picture of the window instead, without any display:
        $0 --screenshot studio.png
    (this renders with QT_QPA_PLATFORM=offscreen)
  - Over SSH, connect with X forwarding (ssh -X) or run it on your desktop.
  - The headless commands need no display:  $0 --help
EOF
        exit 2
    fi
fi

exec "$ROOT/.venv/bin/chita-studio" "$@"
