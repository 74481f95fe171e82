#!/usr/bin/env bash
# Build the one-folder desktop bundle (dist/segrefiner-studio/) with PyInstaller, then smoke-test it from a
# folder outside the checkout: --help, `demo` headless, and the window (offscreen, and under Xvfb when
# xvfb-run is installed) staying up on the demo project. Not part of CI (minutes on 2 cores; see README).
# Linux now; on Windows or macOS run the same PyInstaller command on packaging/segrefiner-studio.spec.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
py=.venv/bin/python
"$py" -m PyInstaller --version >/dev/null 2>&1 || "$py" -m pip install --quiet "pyinstaller>=6.10"

start=$(date +%s)
"$py" -m PyInstaller --noconfirm --clean --log-level WARN --distpath dist --workpath build/pyinstaller \
    packaging/segrefiner-studio.spec
seconds=$(( $(date +%s) - start ))
bundle=dist/segrefiner-studio
cp packaging/segrefiner-studio.desktop app/resources/icons/segrefiner-studio.png "$bundle/"
echo "built $bundle in ${seconds} s: $(du -sh "$bundle" | cut -f1) ($(find "$bundle" -type f | wc -l) files)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
exe="$PWD/$bundle/segrefiner-studio"
export HOME="$work" XDG_DATA_HOME="$work/data" XDG_CONFIG_HOME="$work/config"
cd "$work"
"$exe" --help >/dev/null
"$exe" demo --out demo-out --steps 2
test -s demo-out/summary.json

window_stays_up() {  # the window must still run after 20 s (timeout's status 124), having opened the demo
    local status=0
    timeout 20 "$@" > gui.log 2>&1 || status=$?
    if [ "$status" -ne 124 ] || ! grep -q "window shown" gui.log; then
        cat gui.log >&2
        echo "the window did not stay up (exit status $status): $*" >&2
        exit 1
    fi
}
QT_QPA_PLATFORM=offscreen window_stays_up "$exe"
if command -v xvfb-run >/dev/null; then
    env -u QT_QPA_PLATFORM xvfb-run -a -s "-screen 0 1600x1000x24" bash -c "$(declare -f window_stays_up); window_stays_up '$exe'"
    echo "the window stayed up under Xvfb"
else
    echo "xvfb-run not installed: the window was tried offscreen only"
fi
echo "smoke tests passed"
