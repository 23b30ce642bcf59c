#!/usr/bin/env bash
# On a machine with a GPU: build engine with its CUDA kernels, run the GPU tests, the CUDA
# sanitizers over the attention and fused-op kernels, then the GPU benchmarks. Logs and the
# benchmark JSON go to $OUT (default ./gpu-verify); the last lines printed are the tables.
#
#   scripts/gpu_verify.sh            # everything (about 10 minutes on an H100)
#   scripts/gpu_verify.sh --quick    # the quick benchmark selection
#
# Needs no package index when the image has scikit-build-core, pybind11, cython, cmake, ninja,
# CuPy and PyTorch installed (pip --no-build-isolation).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/gpu-verify}"
mkdir -p "$OUT"
QUICK=""
[ "${1:-}" = "--quick" ] && QUICK="--quick"
PY="${PYTHON:-python3}"
status=0

step() {  # step NAME COMMAND...: run, log to $OUT/NAME.log, remember a failure
  local name="$1"; shift
  echo "== $name"
  if ! "$@" >"$OUT/$name.log" 2>&1; then
    echo "   FAILED (see $OUT/$name.log)"; tail -20 "$OUT/$name.log"; status=1
  else
    tail -3 "$OUT/$name.log"
  fi
}

nvidia-smi --query-gpu=name,compute_cap,clocks.sm,clocks.max.sm,temperature.gpu --format=csv >"$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"
step build "$PY" -m pip install --no-build-isolation -v .
grep -E "ptxas|registers|spill" "$OUT/build.log" >"$OUT/ptxas.txt" || true
step info "$PY" -m engine info
cd /tmp  # import the installed package, not the source tree
step tests_gpu "$PY" -m pytest -q "$ROOT/tests/test_cuda.py" "$ROOT/tests/test_cuda_attention.py" \
  "$ROOT/tests/test_cuda_fused.py" "$ROOT/tests/test_autocast.py"
if command -v compute-sanitizer >/dev/null; then
  step memcheck compute-sanitizer --tool memcheck --error-exitcode=1 "$PY" -m pytest -q -x \
    "$ROOT/tests/test_cuda_attention.py" "$ROOT/tests/test_cuda_fused.py" -k "not gradcheck and not through"
  step racecheck compute-sanitizer --tool racecheck --error-exitcode=1 "$PY" -m pytest -q -x \
    "$ROOT/tests/test_cuda_attention.py" -k "tensor_core_and_simt"
  step synccheck compute-sanitizer --tool synccheck --error-exitcode=1 "$PY" -m pytest -q -x \
    "$ROOT/tests/test_cuda_attention.py" -k "tensor_core_and_simt"
fi
step tests_all "$PY" -m pytest -q "$ROOT/tests"
step bench "$PY" -m engine bench --device cuda --suite attention $QUICK --json "$OUT/bench_attention.json"
step bench_train "$PY" -m engine bench --device cuda --suite train $QUICK --json "$OUT/bench_train.json"
cat "$OUT/bench.log" "$OUT/bench_train.log"
exit $status
