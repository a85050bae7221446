#!/usr/bin/env bash
# Test difftrade against the lowest versions of its dependencies that pyproject.toml admits.
#
#   bash experiments/test_floors.sh [VENV] [--all]
#
# Creates a fresh virtual environment VENV (default /tmp/difftrade-floors; an existing one there
# is replaced), installs the package with its test extra and every dependency pinned to its floor
# (experiments/floors.txt, the single source: each pin equals the ">=" in pyproject.toml, which
# tests/test_packaging.py checks), prints the installed versions, then runs a subset of the test
# suite that imports and exercises every dependency (model, training, evaluation, certificates,
# tasks, config, CLI, checkpoints, reports). With --all it then runs the whole default suite
# (python -m pytest -q). PYTHON chooses the interpreter (default python3.11, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=/tmp/difftrade-floors
ALL=0
for arg in "$@"; do
  case "$arg" in
    --all) ALL=1 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "test_floors.sh: unknown option $arg; allowed: [VENV] [--all]" >&2; exit 2 ;;
    *) VENV=$arg ;;
  esac
done
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}

# Representative fast test files (a few minutes on 2 CPU cores).
SUBSET=(
  tests/test_packaging.py         # CLI parsers, packaged configs, metadata
  tests/test_config_validation.py # config loading and validation
  tests/test_tasks.py             # task families
  tests/test_model.py             # transformer (flax nnx), Pallas kernels interpreted and lowered
  tests/test_train.py             # vmapped training (optax)
  tests/test_evaluate.py          # evaluation
  tests/test_certificate.py       # PAC-Bayes certificates (float64 scopes, scipy)
  tests/test_experiment.py        # whole grids, results.nc (xarray), report figures (matplotlib), CLI
  tests/test_analysis.py          # d*(n), bootstrap, paired tests (scipy)
  tests/test_symbolic.py          # symbolic checks (sympy)
  tests/test_report.py            # reports
  tests/test_finetune.py          # base checkpoints (orbax)
)

if [ -e "$VENV" ] && [ ! -f "$VENV/pyvenv.cfg" ]; then
  echo "test_floors.sh: $VENV exists and is not a virtual environment; allowed: a new path or an old venv" >&2
  exit 2
fi
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
LOG="$VENV/install.log"  # pip's and setuptools' output, shown when the install fails
if ! { "$PY" -m pip install --upgrade pip && "$PY" -m pip install -e ".[test]" -c experiments/floors.txt; } >"$LOG" 2>&1; then
  grep -v '^WARNING: Location' "$LOG" | tail -40 >&2
  echo "test_floors.sh: installing the floors failed (whole log: $LOG)" >&2
  exit 1
fi
"$PY" -m pip check

echo "== installed (floors from experiments/floors.txt) on $("$PY" --version)"
"$PY" - <<'EOF'
import re
import sys
from importlib.metadata import version

wrong = []
for line in open("experiments/floors.txt"):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, pinned = re.split(r"\s*==\s*", line)
    got = version(name)
    print(f"{name:18} {got}")
    if got != pinned:
        wrong.append(f"{name} {got} (pinned {pinned})")
if wrong:
    sys.exit("not the pinned floors: " + ", ".join(wrong))
EOF

echo "== subset: ${#SUBSET[@]} test files"
"$PY" -m pytest -q -p no:cacheprovider "${SUBSET[@]}"

if [ "$ALL" = 1 ]; then
  echo "== the whole default suite"
  "$PY" -m pytest -q -p no:cacheprovider
fi
