#!/usr/bin/env bash
# One device call: carried peer wheels, CUDA checks + launch sweeps, then `losskit bench` per case.
# Usage (repo root, on the GPU machine): OUT=dir bash benchmarks/run_gpu.sh [checks] [bench] [cases...]
set -u
OUT=${OUT:-bench-out/gpu}
mkdir -p "$OUT" /tmp/bench
if ls bench-out/whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site bench-out/whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
export PYTHONUNBUFFERED=1
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())"
what=${1:-all}; shift || true
if [[ $what == checks || $what == all ]]; then
  timeout ${CHECK_TIMEOUT:-300} python3 benchmarks/gpu_check.py ${CHECK_ARGS:---tune} 2>&1 | tee "$OUT/check.log" | grep -E "^(ok|FAIL|ERR|tune)|Error" | grep -v "^ok" | tail -60
  grep -c "^ok" "$OUT/check.log"
fi
if [[ $what == bench || $what == all ]]; then
  cases=${*:-cross_entropy linear_cross_entropy sigmoid_focal bce_with_logits kl_distillation jsd batch_hard_triplet}
  for c in $cases; do
    touch /tmp/tuned.py
    timeout ${CASE_TIMEOUT:-150} python3 -c "exec(open('/tmp/tuned.py').read()); import sys; from losskit.bench import run; sys.exit(run('cuda', '$c', '/tmp/bench/$c'))" > "/tmp/bench/$c.log" 2>&1
    grep -v "━" "/tmp/bench/$c.log" | grep "^|" || tail -5 "/tmp/bench/$c.log"
  done
  head -4 /tmp/bench/*/results.md | head -8
  tar czf "$OUT/bench.tgz" -C /tmp bench
fi
