#!/usr/bin/env bash
# Train the default model from the data of recipes/model/build_data.sh (docs/model-card.md):
#   bash recipes/model/train.sh [OUT [NAME]]        (OUT default: out/default-model; NAME: my-default-model)
# Stage 1: configs/default-model.yaml (2,500 steps), steps 2,000 + 2,500 averaged into
# OUT/models/NAME-stage1.safetensors. Stage 2: configs/default-model-distill.yaml (600 steps of
# self-distillation from stage 1's model), steps 400 + 600 averaged into OUT/models/NAME.safetensors.
# 53 minutes on a 2-core CPU without native bf16 (fp32; measured 2026-12-05), less with it. An interrupted
# stage continues where it stopped when the script is run again (matseg train --resume).
# Use the result with --weights OUT/models/NAME.safetensors (or `matseg.Predictor(path)`).
# GPU=1 trains the GPU recipe instead: configs/default-model-gpu.yaml for stage 1, and stage 2 with
# the same machine settings (device cuda, 12 loader processes, crop sides in 64 px steps).
# MATSEG and PY name the commands where there is no .venv (e.g. MATSEG="python3 -m matseg" PY=python3).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-out/default-model}
NAME=${2:-my-default-model}
PY=${PY:-.venv/bin/python}
MATSEG=${MATSEG:-.venv/bin/matseg}
STAGE1_CONFIG=configs/default-model.yaml
STAGE2_MACHINE=()
if [ "${GPU:-0}" = 1 ]; then
  STAGE1_CONFIG=configs/default-model-gpu.yaml
  STAGE2_MACHINE=(--set device=cuda --set data.workers=12 --set data.size_multiple=64)
fi

# A run folder with training state is continued, an absent one started.
train() {  # RUN_DIR CONFIG [--set ...]
  local run=$1 config=$2
  shift 2
  if [ -f "$run/state.pt" ]; then
    $MATSEG train --resume -o "$run"
  else
    $MATSEG train --config "$config" "$@" "$OUT/synth2d" -o "$run"
  fi
}

train "$OUT/stage1" "$STAGE1_CONFIG"
$PY recipes/model/export.py "$OUT/stage1/step_0002000.safetensors" "$OUT/stage1/step_0002500.safetensors" \
  --name "$NAME-stage1" --models-dir "$OUT/models" --no-default
train "$OUT/stage2" configs/default-model-distill.yaml "${STAGE2_MACHINE[@]}" --set "model.init_weights=$OUT/models/$NAME-stage1.safetensors"
$PY recipes/model/export.py "$OUT/stage2/step_0000400.safetensors" "$OUT/stage2/step_0000600.safetensors" \
  --name "$NAME" --models-dir "$OUT/models" --no-default
echo "model: $OUT/models/$NAME.safetensors (use with --weights)"
