#!/usr/bin/env bash
# Fold 0 of the cross-validation set trained 4x longer than the CPU budget (48 epochs of 2048 frames, LR drop
# at 36) on one GPU, four runs side by side (the lite networks leave the GPU mostly idle, so they share it):
# bmvc2018-lite, scc-lite (channel graph), scc-lite with the pixel graph, scc-lite with SCC off. Each run's
# metrics.csv is its learning curve on the held-out fold; last.ckpt is evaluated when the run finishes.
# Usage: benchmarks/run_gpu_learning_curves.sh OUT_DIR [WORK_DIR] [EPOCHS] [TIME_LIMIT_S]
set -uo pipefail
OUT="${1:?usage: run_gpu_learning_curves.sh OUT_DIR [WORK_DIR] [EPOCHS] [TIME_LIMIT_S]}"
WORK="${2:-/tmp/facskit-gpu}"
EPOCHS="${3:-48}"
LIMIT="${4:-420}"
CPUS="$(nproc)"
mkdir -p "$OUT" "$WORK"
FACSKIT=(python3 -m facskit)
benchmarks/make_cv_set.sh "$WORK" "$CPUS"
COMMON=(--data "$WORK/cache" train.device=cuda train.workers=3 "train.epochs=$EPOCHS"
        "schedule.milestones=[$((EPOCHS * 3 / 4))]")
run() {  # NAME CONFIG [overrides...]
    local name="$1" config="$2"
    shift 2
    timeout "$LIMIT" "${FACSKIT[@]}" train "$config" --out "$WORK/$name" "${COMMON[@]}" "$@" --quiet \
        > "$WORK/$name.log" 2>&1
    "${FACSKIT[@]}" evaluate "$WORK/$name/last.ckpt" --data "$WORK/cache" --device cuda \
        --out "$WORK/$name.eval.json" >> "$WORK/$name.log" 2>&1
}
# SET=lite (default): the four lite networks; SET=paper: the paper-size Hourglass (lite preset's data and
# schedule, 256-pixel input, 64x64 maps), bmvc2018-lite at twice the epochs, bmvc2018-lite at 12 epochs in fp32
# (is bf16 AMP costing ICC?); SET=amp: bmvc2018-lite with bf16 AMP on seeds 0 and 1, fp32 on seed 1.
NAMES=()
if [ "${SET:-lite}" = paper ]; then
    run bmvc-paper bmvc2018-lite model.name=bmvc2018 & NAMES+=(bmvc-paper)
    run bmvc-lite-long bmvc2018-lite "train.epochs=$((EPOCHS * 2))" "schedule.milestones=[$((EPOCHS * 3 / 2))]" &
    NAMES+=(bmvc-lite-long)
    run bmvc-lite-fp32 bmvc2018-lite train.epochs=12 "schedule.milestones=[9]" train.amp=false &
    NAMES+=(bmvc-lite-fp32)
elif [ "${SET:-lite}" = amp ]; then  # repeats at EPOCHS: bf16 AMP twice (two seeds), fp32 on the second
    run amp-seed0 bmvc2018-lite train.seed=0 & NAMES+=(amp-seed0)
    run amp-seed1 bmvc2018-lite train.seed=1 & NAMES+=(amp-seed1)
    run fp32-seed1 bmvc2018-lite train.seed=1 train.amp=false & NAMES+=(fp32-seed1)
else
    run bmvc-lite bmvc2018-lite & NAMES+=(bmvc-lite)
    run scc-lite scc-lite & NAMES+=(scc-lite)
    run scc-lite-px scc-lite model.overrides.nodes=pixels & NAMES+=(scc-lite-px)
    run scc-lite-noscc scc-lite "model.overrides.scc=[false, false, false]" & NAMES+=(scc-lite-noscc)
fi
wait
for name in "${NAMES[@]}"; do
    cp "$WORK/$name/metrics.csv" "$OUT/$name.metrics.csv"
    python3 - "$WORK/$name.eval.json" "$name" <<'PY'
import json, sys
try:
    m = json.load(open(sys.argv[1]))["mean"]
    print(f"{sys.argv[2]}: last.ckpt ICC {m['icc']:.3f} MAE {m['mae']:.3f} PCC {m['pcc']:.3f} F1 {m['f1']:.3f}")
except (OSError, KeyError, ValueError) as error:
    print(f"{sys.argv[2]}: no evaluation ({error})")
PY
done | tee "$OUT/summary.txt"
for name in "${NAMES[@]}"; do
    tail -n 3 "$WORK/$name/metrics.csv" | cut -d, -f1,6,7 | sed "s/^/$name /"
done
