#!/usr/bin/env bash
# Rebuild the training data of the default model from nothing (docs/model-card.md), then train:
#   bash recipes/model/build_data.sh [OUT]            (OUT default: out/default-model)
#   .venv/bin/matseg train --config configs/default-model.yaml OUT/synth2d -o OUT/run --bench OUT/devset
# Every step is resumable (a rerun skips what is finished) and seeded; about 3 minutes on 2 cores
# (measured 2026-12-05 on a fresh clone: 2 min 50 s; photos with their downloads 23 s, textures
# 20 s, 3,000 2D scenes 2.1 min), and every image and mask comes out byte for byte the same.
# The 3D part is optional (MATSEG_3D=1, needs the .venv-3d of the README); the shipped model did
# not use it (docs/model-card.md).
# PY, MATSEG and MATSEG3D name the commands where there is no .venv / .venv-3d (e.g. on a cluster
# node: PY=python3 MATSEG="python3 -m matseg"). With the photos already in OUT/photos (copied from
# another machine) the fetch step checks them against the manifest and downloads nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-out/default-model}
PY=${PY:-.venv/bin/python}
MATSEG=${MATSEG:-.venv/bin/matseg}
MATSEG3D=${MATSEG3D:-.venv-3d/bin/matseg}

$PY recipes/photos/fetch.py -o "$OUT/photos"                                   # 266 train + 18 dev photos, sha256-checked
$PY recipes/devset/build.py -o "$OUT/devset" --photos "$OUT/photos"            # the real-photo dev set (12 photos)
# Small cells: most training photos are 320-700 px, too small for the default 40/75 px cells.
$MATSEG textures extract "$OUT/photos/train" -o "$OUT/textures" --tile-size 24 --min-cells 5 -w 1
$MATSEG synth2d --images "$OUT/photos/train" --textures "$OUT/textures" -n 3000 --seed 11 -o "$OUT/synth2d"
if [ "${MATSEG_3D:-0}" = 1 ]; then
  $MATSEG pbr make "$OUT/textures" -o "$OUT/pbr" --seed 12
  $MATSEG pbr mix "$OUT/pbr" -n 150 -o "$OUT/pbr_mix" --seed 13
  $MATSEG3D synth3d -n 400 --size 384 --seed 14 -o "$OUT/synth3d" \
    --pbr "$OUT/pbr" --pbr "$OUT/pbr_mix" --images "$OUT/photos/train"
fi
echo "data in $OUT; train with: $MATSEG train --config configs/default-model.yaml $OUT/synth2d -o $OUT/run --bench $OUT/devset"
