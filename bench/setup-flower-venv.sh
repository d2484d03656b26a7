#!/usr/bin/env bash
# Create .venv-flower: Flower's own virtual environment for the aggregation benchmark.
# flwr[simulation]==1.41.0 needs packaging>=24 while eth-ape needs packaging<24, so it cannot share .venv.
# torch goes in first and pinned, so that nothing resolves a multi-GB CUDA build. Idempotent (stamp file).
# Usage: bench/setup-flower-venv.sh [VENV_DIR]   (default: .venv-flower at the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv-flower}"
STAMP="$VENV/.flower-installed"
WANT="torch==2.13.0 flwr[simulation]==1.41.0"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  exit 0
fi
PYTHON="${PYTHON:-python3}"
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
# pip warns once per package about extra index folders that hold no such package: not worth showing.
quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
quiet "${PIP[@]}" torch==2.13.0
quiet "${PIP[@]}" "flwr[simulation]==1.41.0" numpy
"$VENV/bin/python" -c "import flwr, numpy, torch; from flwr.server.strategy.aggregate import aggregate, aggregate_inplace, aggregate_median, aggregate_trimmed_avg, aggregate_krum"
echo "$WANT" > "$STAMP"
