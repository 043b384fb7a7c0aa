#!/usr/bin/env bash
# The six stages end to end on small defaults (`make pipeline`, about 10 minutes on 2 cores):
# pair real captures with twin renders, train a noiser, render demos, noisify them, train a
# policy, evaluate it under a structured-light sensor. Everything goes to $OUT (out/pipeline).
# Small means small: a few hundred training steps each, to show the chain, not to reach the
# benchmarks' figures (bench/realism.py and bench/sim2real.py use the full settings).
# Each stage is skipped when its output exists; delete $OUT to start over.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
OUT=${OUT:-out/pipeline}
DATA=${DATA:-../shared/data/kinect-7scenes}
if [ ! -d "$DATA/frames" ]; then
  echo "pipeline: $DATA not found; pairing the 3-frame test fixture instead" >&2
  DATA=tests/fixtures/kinect7
fi
mkdir -p "$OUT"
step() { echo "+ $*"; "$@"; }

[ -e "$OUT/pairs.zarr" ] || step "$BIN/realdiff" pair --frames "$DATA/frames" \
  --intrinsics "$DATA/camera-intrinsics.txt" --mesh "$DATA/scene_mesh.ply" --out "$OUT/pairs.zarr" --quiet
[ -e "$OUT/noiser.pt" ] || step "$BIN/realdiff" train "$OUT/pairs.zarr" --out "$OUT/noiser.pt" \
  --coarse-iters 150 --fine-iters 150 --quiet
step "$BIN/simgen" render --task pick --episodes 20 --out "$OUT/pick.zarr" --no-rgb --quiet
"$BIN/python" -c "import sys; from realdiff.noisify import is_noisified
sys.exit(0 if is_noisified('$OUT/pick.zarr', 'front_depth_noisy') else 1)" \
  || step "$BIN/realdiff" noisify "$OUT/pick.zarr" --noiser "$OUT/noiser.pt" --quiet
step "$BIN/policies" train "$OUT/pick.zarr" --task pick --depth-key front_depth_noisy --out "$OUT/policy" \
  --steps 300 --quiet
step "$BIN/policies" eval "$OUT/policy" --task pick --episodes 10 --sensor noiser:structured-light
