#!/usr/bin/env bash
# Builds engine with AddressSanitizer and UndefinedBehaviorSanitizer (ENGINE_SANITIZE=
# address,undefined, no CUDA) into a fresh virtual environment and runs the tests that drive the
# native code under them: the kernel tests, the native-module tests and the bad-input corpus
# (whose subprocesses inherit the sanitizers). Exits non-zero on a test failure or on any
# sanitizer report, and prints the count of reports.
#
#   scripts/sanitize.sh                      # the default selection
#   scripts/sanitize.sh tests/test_ops_forward.py -k conv     # any pytest arguments instead
#
# Environment: ENGINE_SANITIZE_VENV reuses (or creates) a venv at that path instead of a
# temporary one; PYTHON picks the interpreter (default python3).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

LIBASAN="$(gcc -print-file-name=libasan.so)"
LIBSTDCXX="$(gcc -print-file-name=libstdc++.so)"
if [ ! -e "$LIBASAN" ] || [ ! -e "$LIBSTDCXX" ]; then
  echo "sanitize: gcc has no libasan.so or libstdc++.so (got '$LIBASAN', '$LIBSTDCXX')" >&2
  exit 2
fi
# NOTE: the interpreter is not instrumented, so libasan must be loaded before it. libstdc++ goes
# with it: ASan wraps __cxa_throw when it starts, and finds nothing to wrap if libstdc++ is only
# loaded later with the extension module; the first C++ exception then aborts.
PRELOAD="$LIBASAN $LIBSTDCXX"

VENV="${ENGINE_SANITIZE_VENV:-$(mktemp -d)/venv}"
if [ ! -x "$VENV/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
# NOTE: the sanitizer flags come from CMakeLists.txt (ENGINE_SANITIZE): -fsanitize=... -g
# -fno-omit-frame-pointer on every native file, so frames in reports carry file and line.
ENGINE_SANITIZE=address,undefined ENGINE_CUDA=OFF "$VENV/bin/python" -m pip install -q "$ROOT[test]"
# A module built without the sanitizers would pass the tests and check nothing.
for module in _C _fused _fused_avx2; do
  so="$(cd / && LD_PRELOAD="$PRELOAD" ASAN_OPTIONS=detect_leaks=0 "$VENV/bin/python" -c "import engine.$module as m; print(m.__file__)")"
  if ! ldd "$so" | grep libasan > /dev/null; then  # not grep -q: ldd would get SIGPIPE
    echo "sanitize: $so is not linked against libasan: the build did not take ENGINE_SANITIZE" >&2
    exit 2
  fi
done

if [ "$#" -eq 0 ]; then
  # NOTE: ASan's throwing operator new aborts on an allocation it cannot satisfy instead of
  # throwing std::bad_alloc (allocator_may_return_null covers only malloc and nothrow new), so the
  # corpus cases whose native kernel must fail a multi-GiB plan allocation are left to the normal
  # build, where they end in MemoryError.
  set -- "$ROOT"/tests/test_kernels_*.py "$ROOT/tests/test_native_modules.py" "$ROOT/tests/test_bad_inputs.py" \
    -k "not (conv2d-padding-past and native)"
fi

LOG="$(mktemp -d)/sanitize.log"
# detect_leaks=0: CPython keeps objects alive at exit by design. allocator_may_return_null=1: an
# allocation too large to satisfy returns NULL (NumPy raises MemoryError) instead of aborting, as
# the corpus's huge-size cases expect. PYTHONMALLOC=malloc bypasses CPython's small-object pool,
# which would hide out-of-bounds accesses inside its arenas.
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:abort_on_error=1:print_summary=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:print_summary=1"
export PYTHONMALLOC=malloc
# Sanitized code runs several times slower: give each corpus batch more time.
export ENGINE_CORPUS_TIMEOUT="${ENGINE_CORPUS_TIMEOUT:-600}"

set +e
# Run from outside the checkout, so the installed (sanitized) package is imported.
(cd "$(dirname "$LOG")" && LD_PRELOAD="$PRELOAD" "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@") 2>&1 | tee "$LOG"
status=${PIPESTATUS[0]}
set -e

# Reports from the pytest process itself, and those the corpus quotes from its subprocesses.
reports=$(grep -cE "ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer" "$LOG" || true)
echo "sanitize: pytest exit status $status; sanitizer reports: $reports (log: $LOG)"
if [ "$status" -ne 0 ] || [ "$reports" -ne 0 ]; then
  exit 1
fi
