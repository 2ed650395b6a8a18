#!/usr/bin/env bash
# GPU figures for BENCHMARKS.md in one go (one lease of a GPU machine): the analysis network stage per model,
# precision and batch (benchmarks/bench_gpu.py), training throughput with the real loader against batches in
# memory (benchmarks/bench_train_throughput.py --amp), and a timed `facskit train` + `evaluate` on CUDA.
#
# Usage: benchmarks/run_gpu_benchmarks.sh OUT_DIR [WORK_DIR]
#   needs: a CUDA GPU, facskit importable (pip install -e . or PYTHONPATH), and the aligned crops made on a
#   CPU machine with `python benchmarks/bench_gpu.py --make-crops gpu_carry/crops` (the GPU side needs
#   neither the landmark model nor a detector: the DISFA-layout synthetic set ships its landmarks).
# GPU utilisation is sampled once a second by `nvidia-smi dmon` over the whole run (dmon.log), with the
# start of each phase in phases.log, so each phase's utilisation can be read off.
set -uo pipefail
OUT="${1:?usage: run_gpu_benchmarks.sh OUT_DIR [WORK_DIR]}"
WORK="${2:-/tmp/facskit-gpu}"
CPUS="$(nproc)"
mkdir -p "$OUT" "$WORK"
FACSKIT=(python3 -m facskit)
phase() { echo "$(date +%s) $*" | tee -a "$OUT/phases.log"; }

{ nvidia-smi; nproc; lscpu | grep -E "Model name"; python3 -c "import torch; print(torch.__version__)"; } \
    > "$OUT/env.txt" 2>&1
nvidia-smi dmon -s u -o T -d 1 > "$OUT/dmon.log" 2>&1 &
DMON=$!

phase inference
python3 benchmarks/bench_gpu.py --crops gpu_carry/crops --seconds 1.0 --json "$OUT/gpu_inference.json" \
    > "$OUT/gpu_inference.log" 2>&1

phase data
benchmarks/make_cv_set.sh "$WORK" "$CPUS"

phase train-throughput
python3 benchmarks/bench_train_throughput.py --cache "$WORK/cache" --device cuda --amp --batch-size 64 \
    --steps 30 --threads 4 --workers "0,4,8,$((CPUS - 2))" \
    --models bmvc2018-tiny,bmvc2018,scc-lite,scc-resnet50 > "$OUT/train_throughput.log" 2>&1

# Fold 0 of the CPU cross-validation's budget (12 epochs of 2048 frames), on CUDA with bf16 AMP.
phase train-lite
"${FACSKIT[@]}" train bmvc2018-lite --data "$WORK/cache" --out "$WORK/lite" train.device=cuda train.workers=8 \
    train.epochs=12 'schedule.milestones=[9]' --quiet > "$OUT/train_lite.log" 2>&1
"${FACSKIT[@]}" evaluate "$WORK/lite/last.ckpt" --data "$WORK/cache" --device cuda \
    --out "$WORK/lite_eval.json" >> "$OUT/train_lite.log" 2>&1
cat "$WORK/lite_eval.json" >> "$OUT/train_lite.log"
cp "$WORK/lite/metrics.csv" "$OUT/lite_metrics.csv"
phase done
kill "$DMON" 2>/dev/null
tail -n 45 "$OUT/gpu_inference.log" "$OUT/train_throughput.log" "$OUT/train_lite.log" "$OUT/phases.log"
