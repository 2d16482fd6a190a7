#!/usr/bin/env bash
# Train the training-time ablations of config/sweeps/ablations.yaml into models/ablations/ (not
# committed, ~4 MB each), then run the whole sweep into results/ablations/ (finished runs are
# cached, so reruns are cheap).
# Each checkpoint is trained exactly like models/diffusion_avoid (scripts/reproduce_models.sh)
# except for the one setting its name gives. Usage: scripts/train_ablations.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CLI=.venv/bin/dp-tt-ros
DATA=${DATA:-data}
OUT=models/ablations
[[ -d $DATA/avoid.zarr ]] || $CLI collect --task avoid --episodes 200 --noise 0.01 --seed 1000 \
  --out "$DATA/avoid.zarr"

train() {  # NAME, then --config overrides on top of the shipped avoid settings
  local name=$1 resume=(); shift
  # A finished run has no resume/ folder left; a killed one continues where it stopped.
  [[ -f $OUT/$name/model.safetensors && ! -d $OUT/$name/resume ]] && return
  [[ -d $OUT/$name/resume ]] && resume=(--resume)
  $CLI train --policy diffusion --data "$DATA/avoid.zarr" --out "$OUT/$name" "${resume[@]}" \
    --steps 3000 --batch-size 32 --lr 1e-3 --warmup-steps 100 --threads 1 --seed 0 --no-progress \
    --config obs_keys=joint_pos,object_state horizon=8 n_action_steps=4 unet.down_dims='[64,128]' \
    unet.step_embed_dim=32 noise.prediction_type=sample "$@"
  rm -rf "$OUT/$name/resume"
}

train diffusion_avoid_beta_linear noise.beta_schedule=linear
train diffusion_avoid_beta_cosine noise.beta_schedule=cosine
train diffusion_avoid_H16 horizon=16 n_action_steps=8
train diffusion_avoid_H32 horizon=32 n_action_steps=8
$CLI eval --sweep config/sweeps/ablations.yaml --out results/ablations --skip-missing
