#!/usr/bin/env bash
# The cross-validation set every accuracy benchmark uses: 36 synthetic DISFA-layout people x 134 frames
# (`--activity 2.0`, seed 0), prepared with the dataset's landmarks into WORK/cache. Skipped when the cache
# exists. Usage: benchmarks/make_cv_set.sh WORK [WORKERS]   (FACSKIT: how to call facskit, default
# "python3 -m facskit").
set -euo pipefail
WORK="${1:?usage: make_cv_set.sh WORK [WORKERS]}"
WORKERS="${2:-$(nproc)}"
read -r -a FACSKIT <<< "${FACSKIT:-python3 -m facskit}"
if [ ! -f "$WORK/cache/index.parquet" ]; then
    "${FACSKIT[@]}" synth "$WORK/disfa-synth" --format disfa --subjects 36 --frames 134 --seed 0 \
        --activity 2.0 --workers "$WORKERS" --quiet
    "${FACSKIT[@]}" prepare disfa "$WORK/disfa-synth" --out "$WORK/cache" --workers "$WORKERS" --quiet
fi
