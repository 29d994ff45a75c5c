#!/usr/bin/env bash
# Set-up-and-go: `bash run.sh main` runs the main job, `bash run.sh test` the test suite.
# Creates .venv (Python 3.11) and installs jaxsal into it on first use.
set -euo pipefail
cd "$(dirname "$0")"
# glibc's default arenas make XLA's CPU runtime page-fault heavily (a third of the CPU time
# went to the kernel in training); one arena with high trim/mmap thresholds avoids it.
export GLIBC_TUNABLES="${GLIBC_TUNABLES:-glibc.malloc.arena_max=1:glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=1073741824:glibc.malloc.top_pad=268435456}"
what="${1:-}"
shift || true
venv="${JAXSAL_VENV:-.venv}"
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
fi
py="$venv/bin/python"
case "$what" in
  main)
    "$py" -m pip install -q -e .
    exec "$py" -m experiments.main "$@"
    ;;
  test)
    "$py" -m pip install -q -e ".[test]"
    "$venv/bin/ruff" check .
    "$venv/bin/ruff" format --check .
    exec "$py" -m pytest -n "${JAXSAL_TEST_WORKERS:-2}" --durations=15 "$@"
    ;;
  *)
    echo "usage: bash run.sh main|test [args]" >&2
    exit 2
    ;;
esac
