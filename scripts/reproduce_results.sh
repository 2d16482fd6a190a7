#!/usr/bin/env bash
# Regenerate results/ and the README's results section from the shipped checkpoints in models/.
# Usage: scripts/reproduce_results.sh [evals] [sweeps] [bench]   (default: all three, in order)
#   evals   100 seeded episodes per shipped checkpoint -> results/<checkpoint>.json
#   sweeps  ablations (trains models/ablations first), avoid path overlay, full comparison,
#           TT under latency
#   bench   every benchmark behind the README table; the GPU rows only where torch sees a GPU
# Benchmarks want a quiet machine: run nothing else meanwhile. The README block is rebuilt last.
set -euo pipefail
cd "$(dirname "$0")/.."
CLI=.venv/bin/dp-tt-ros
parts=("$@")
((${#parts[@]})) || parts=(evals sweeps bench)

task_of() {  # models/<policy>_<task>[_variant] -> task
  local task
  for task in pick_place reach avoid push; do
    [[ $1 == *_${task}* ]] && { echo "$task"; return; }
  done
  echo "no task in checkpoint name $1" >&2; return 1
}

evals() {
  local dir name
  for dir in models/*/; do
    name=$(basename "$dir")
    [[ -f $dir/config.json ]] || continue
    OMP_NUM_THREADS=1 $CLI eval --checkpoint "models/$name" --task "$(task_of "$name")" \
      --episodes 100 --batch 10 --json "results/$name.json"
  done
}

sweeps() {
  scripts/train_ablations.sh
  $CLI eval --sweep config/sweeps/avoid_modes.yaml --out results/avoid_modes
  $CLI eval --sweep config/sweeps/comparison.yaml --out results/comparison --skip-missing
  $CLI eval --sweep config/sweeps/tt_latency.yaml --out results/tt_latency
}

bench() {
  local small=(--down-dims 64,128,256 --horizon 16 --action-dim 8 --obs-dim 20
               --inference-steps 10 --sampler ddim)
  $CLI bench sim --json results/bench/sim.json
  $CLI bench inference "${small[@]}" --threads 2 --json results/bench/inference_small_t2.json
  $CLI bench inference "${small[@]}" --threads 1 --json results/bench/inference_small_t1.json
  $CLI bench inference --down-dims 256,512,1024 --threads 2 \
    --json results/bench/inference_large_t2.json
  $CLI bench inference --down-dims 256,512,1024 --threads 2 --batch 32 --repeats 6 \
    --json results/bench/inference_large_batch32_t2.json
  $CLI bench planning --json results/bench/planning.json
  $CLI bench planning --checkpoint models/transformer_reach \
    --json results/bench/planning_transformer_reach.json
  $CLI bench planning --checkpoint models/transformer_reach --tracked-targets false \
    --json results/bench/planning_transformer_reach_decoded.json
  $CLI bench planning --n-layer 4 --n-embd 128 --state-dim 20 --window-transitions 10 \
    --mode value --beam-widths 32 --horizons 8 --no-default-setting \
    --json results/bench/planning_paper_size.json
  $CLI bench ros --trials 200 --controller-mode forward_position --json results/bench/ros.json
  $CLI bench ros --trials 200 --controller-mode joint_trajectory \
    --json results/bench/ros_joint_trajectory.json
  $CLI bench ros --trials 200 --controller-mode forward_position --stream-hz 100 \
    --json results/bench/ros_streaming.json
  $CLI bench executor --duration 20 --json results/bench/executor.json
  if .venv/bin/python -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
    $CLI bench inference --device cuda --repeats 50 --json results/bench/inference_gpu_small.json
    $CLI bench inference --device cuda --down-dims 256,512,1024 --repeats 50 \
      --json results/bench/inference_gpu_large.json
    $CLI bench inference --device cuda --sampler ddpm --inference-steps 100 --repeats 10 \
      --variants cuda_graph,traced --json results/bench/inference_gpu_small_ddpm100.json
  fi
}

for part in "${parts[@]}"; do
  case $part in
    evals|sweeps|bench) "$part" ;;
    *) echo "unknown part $part; expected evals, sweeps or bench" >&2; exit 2 ;;
  esac
done
.venv/bin/python -m dp_tt_ros.evaluation.report --readme README.md
