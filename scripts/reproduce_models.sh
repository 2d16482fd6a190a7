#!/usr/bin/env bash
# Regenerate the shipped checkpoints in models/ from scratch: scripted-expert demos, then training.
# Usage: scripts/reproduce_models.sh [TASK ...] [-- POLICY ...]   (default: every task, DP and BC)
# Demos use seeds from 1000 on, so evaluation seeds 0..999 are scenes no policy was trained on.
set -euo pipefail
cd "$(dirname "$0")/.."
CLI=.venv/bin/dp-tt-ros
DATA=${DATA:-data}
tasks=(); policies=()
while (($#)); do
  if [[ $1 == -- ]]; then shift; policies=("$@"); break; fi
  tasks+=("$1"); shift
done
((${#tasks[@]})) || tasks=(reach avoid push pick_place)
# transformer is opt-in (`-- transformer`): no TT checkpoint ships yet (see the README results).
((${#policies[@]})) || policies=(diffusion bc)

obs_keys() {  # reach needs only the arm and the goal; other tasks also see their objects
  if [[ $1 == reach ]]; then echo joint_pos; else echo joint_pos,object_state; fi
}

collect() {  # clean demos for DP/BC; TT also gets noisy demos (failures kept) for a spread of returns
  local task=$1
  [[ -d $DATA/$task.zarr ]] || $CLI collect --task "$task" --episodes 200 --noise 0.01 \
    --seed 1000 --out "$DATA/$task.zarr"
  if [[ ! -d $DATA/${task}_mixed.zarr ]]; then
    cp -r "$DATA/$task.zarr" "$DATA/${task}_mixed.zarr"
    $CLI collect --task "$task" --episodes 100 --noise 0.04 --keep-failures \
      --out "$DATA/${task}_mixed.zarr"
  fi
}

train() {
  local policy=$1 task=$2 keys; keys=$(obs_keys "$task")
  local dims='[64,128]' steps=3000
  [[ $task == reach ]] && { dims='[32,64]'; steps=2000; }
  case $policy in
    diffusion)
      $CLI train --policy diffusion --data "$DATA/$task.zarr" --out "models/diffusion_$task" \
        --steps $steps --batch-size 32 --lr 1e-3 --warmup-steps 100 --threads 1 --seed 0 \
        --no-progress --config obs_keys="$keys" horizon=8 n_action_steps=4 \
        unet.down_dims="$dims" unet.step_embed_dim=32 noise.prediction_type=sample ;;
    bc)
      $CLI train --policy bc --data "$DATA/$task.zarr" --out "models/bc_$task" \
        --steps $steps --batch-size 32 --lr 1e-3 --warmup-steps 100 --threads 1 --seed 0 \
        --no-progress --config obs_keys="$keys" horizon=8 n_action_steps=4 ;;
    transformer)
      $CLI train --policy transformer --data "$DATA/${task}_mixed.zarr" \
        --out "models/transformer_$task" --steps $steps --batch-size 32 --threads 1 --seed 0 \
        --no-progress ;;
  esac
  rm -rf "models/${policy}_$task/resume"
}

for task in "${tasks[@]}"; do
  collect "$task"
  for policy in "${policies[@]}"; do train "$policy" "$task"; done
done
