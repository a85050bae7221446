#!/usr/bin/env bash
# The multi-family study, end to end on a CPU: transfer checks, the three grids, then the
# summary (docs/study.md's tables) from the result files copied to docs/runs/study/.
# Each grid resumes if interrupted; rerunning skips finished work.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p runs/study docs/runs/study
for family in addition chain sorting; do
  start=$SECONDS
  difftrade transfer "experiments/study/transfer_$family.toml" --out "runs/study/transfer_$family"
  echo "transfer_$family: $((SECONDS - start)) s"
  cp "runs/study/transfer_$family/results.nc" "docs/runs/study/transfer_$family.nc"
  start=$SECONDS
  difftrade run "experiments/study/$family.toml" --out "runs/study/$family" --resume
  echo "$family: $((SECONDS - start)) s"
  cp "runs/study/$family/results.nc" "docs/runs/study/$family.nc"
done
python experiments/study/summarize.py docs/runs/study --out docs/study_tables.md
