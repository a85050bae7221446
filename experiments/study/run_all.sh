#!/usr/bin/env bash
# The multi-family study, end to end on a CPU: transfer checks, the three family grids, the
# graded-extrapolation grid (chain, mixture training) and the fixed-epochs grid (addition), then
# the summary (docs/study.md's tables) from the result files copied to docs/runs/study/.
# Each grid resumes if interrupted; rerunning skips finished work. The 16-seed validation grids
# were made as two runs of eight seeds (experiments/study/parts/, merged with difftrade merge: see
# each config); one run of the whole config gives the same grid.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p runs/study docs/runs/study
timed() {  # timed NAME COMMAND...: run it, print its wall time
  local name=$1 start=$SECONDS
  shift
  "$@"
  echo "$name: $((SECONDS - start)) s"
}
for family in addition chain sorting; do
  timed "transfer_$family" difftrade transfer "experiments/study/transfer_$family.toml" --out "runs/study/transfer_$family"
  cp "runs/study/transfer_$family/results.nc" "docs/runs/study/transfer_$family.nc"
done
for grid in addition chain sorting chain_mixture addition_epochs chain_validation addition_validation sorting_validation; do
  timed "$grid" difftrade run "experiments/study/$grid.toml" --out "runs/study/$grid" --resume
  cp "runs/study/$grid/results.nc" "docs/runs/study/$grid.nc"
done
python experiments/study/summarize.py docs/runs/study --out docs/study_tables.md
