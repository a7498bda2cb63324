#!/usr/bin/env bash
# The native kernels fuzzed under AddressSanitizer + UndefinedBehaviorSanitizer: builds
# edgepose._native with -fsanitize=address,undefined in a scratch copy (the checkout's own build
# is left alone), then runs tests/fuzz with hypothesis against it. Any out-of-bounds access,
# use-after-free or undefined behaviour aborts with the sanitizer's report (exit non-zero).
#   bash .ci/fuzz_asan.sh            (EDGEPOSE_FUZZ_EXAMPLES=N examples per test, default 2000)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-$(pwd)/.venv/bin/python}"
CXX="${CXX:-g++}"
t0=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r setup.py pyproject.toml csrc edgepose tests "$work/"
rm -f "$work"/edgepose/_native*.so
(cd "$work" && EDGEPOSE_SANITIZE=1 EDGEPOSE_REQUIRE_NATIVE=1 CXX="$CXX" "$PY" setup.py -q build_ext --inplace >"$work/build.log" 2>&1) \
  || { cat "$work/build.log"; exit 1; }
so=$(ls "$work"/edgepose/_native*.so)
ldd "$so" | grep -q libasan || { echo "fuzz: $so is not linked with ASan"; exit 1; }
# -s: a sanitizer report goes to fd 2 and then aborts; pytest's capture would swallow it
# a non-ASan python needs the runtime first in the process; leaks are CPython's own, not ours
asan="$($CXX -print-file-name=libasan.so)"
ubsan="$($CXX -print-file-name=libubsan.so)"
export LD_PRELOAD="$asan:$ubsan"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1"
export EDGEPOSE_FUZZ_EXAMPLES="${EDGEPOSE_FUZZ_EXAMPLES:-2000}" EDGEPOSE_IMPL=native PYTHONWARNINGS=ignore
(cd "$work" && "$PY" -c "import edgepose; assert edgepose.implementation() == 'native'; print('fuzz: sanitized', edgepose._dispatch._native_mod.__file__)" \
  && "$PY" -m pytest -q -s -p no:cacheprovider tests/fuzz --hypothesis-show-statistics -W ignore::RuntimeWarning \
     | grep -E "passed|failed|error|::|returned a result" )
echo "fuzz: $EDGEPOSE_FUZZ_EXAMPLES examples per test under ASan+UBSan, done in $(( $(date +%s) - t0 )) s"
