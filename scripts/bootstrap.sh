#!/usr/bin/env bash
# Sets up .venv with everything the app and its tests need. Idempotent: it re-installs only when
# pyproject.toml changed since the last run. TORCH_SPEC picks the torch build (the default is the
# CPU build pinned for CI; on a CUDA machine, e.g. TORCH_SPEC="torch --index-url <your CUDA index>").
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "SegRefiner Studio needs Python 3.11 or newer ($python is $("$python" --version 2>&1))" >&2
    exit 1
}
stamp=.venv/.installed
want="$(sha256sum pyproject.toml | cut -c1-16) ${TORCH_SPEC:-torch==2.13.0}"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
echo "Setting up .venv (first run only) ..." >&2
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet ${TORCH_SPEC:-torch==2.13.0}
.venv/bin/python -m pip install --quiet -e ".[dev]"
echo "$want" > "$stamp"
