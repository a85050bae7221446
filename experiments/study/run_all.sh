#!/usr/bin/env bash
# The multi-family study, end to end on a CPU: transfer checks, the three family grids, the
# graded-extrapolation grid (chain, mixture training), the fixed-epochs grid (addition), the
# validation-stopped grids, the bases and fine-tuned grids, then the summary (docs/study.md's
# tables and the fine-tuning figures) from the result files copied to docs/runs/study/.
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
# Fine-tuning: each family's bases (a broad weak mix, the easiest levels only), then its
# validation grid fine-tuned from each base.
mkdir -p docs/runs/study/bases docs/runs/study/finetune
for base in sorting_broad sorting_easy addition_broad addition_easy chain_broad chain_easy; do
  timed "base_$base" difftrade pretrain "experiments/study/bases/$base.toml" --out "runs/study/bases/$base"
  cp "runs/study/bases/$base/results.nc" "docs/runs/study/bases/$base.nc"
  timed "finetune_$base" difftrade run "experiments/study/finetune/$base.toml" --out "runs/study/finetune/$base" --resume
  cp "runs/study/finetune/$base/results.nc" "docs/runs/study/finetune/$base.nc"
done
python experiments/study/summarize.py docs/runs/study --out docs/study_tables.md --figures docs/figures/study
