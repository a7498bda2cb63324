#!/usr/bin/env bash
# The device-side tests (everything that needs neither rknn-toolkit2 nor torch) a second time,
# in a venv with the newest numpy / opencv-python-headless / onnxruntime that pip resolves
# today: what a board's or a new user's `pip install` gives. Prints the versions it used.
#   bash .ci/newest.sh            (venv: ./.venv-newest, or $NEWEST_VENV)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${NEWEST_VENV:-.venv-newest}"
PYTHON="${PYTHON:-python3}"
t0=$(date +%s)
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
VENV="$(cd "$VENV" && pwd)"
quiet() { grep -v "is ignored: it is neither a file nor a directory" || true; }  # this machine's pip config
"$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | quiet
# no pins on purpose: the newest releases
"$VENV/bin/python" -m pip install -q --upgrade numpy opencv-python-headless onnxruntime onnx \
  pytest pytest-benchmark hypothesis psutil pybind11 setuptools wheel 2>&1 | quiet
# the native core, built against this venv's numpy (no build isolation: the same numpy it runs)
EDGEPOSE_REQUIRE_NATIVE=1 "$VENV/bin/python" -m pip install -q --no-build-isolation --no-deps . 2>&1 | quiet
"$VENV/bin/python" - <<'PY'
import sys, numpy, cv2, onnxruntime, onnx, edgepose
print(f"newest: python {sys.version.split()[0]}, numpy {numpy.__version__}, opencv-python-headless "
      f"{cv2.__version__}, onnxruntime {onnxruntime.__version__}, onnx {onnx.__version__}; "
      f"edgepose kernels: {edgepose.implementation()}")
PY
# run from a copy of tests/ outside the checkout so the installed package (not ./edgepose) is imported
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r tests pyproject.toml "$work/"
(cd "$work" && EDGEPOSE_REQUIRE_NATIVE=1 EDGEPOSE_DEVICE_ONLY=1 "$VENV/bin/python" -m pytest -q \
  -p no:cacheprovider -m "not rknn and not board" \
  --ignore=tests/test_firmware.py --ignore=tests/test_npu_run.py tests)  # host-side: need firmware/ and torch
echo "newest: done in $(( $(date +%s) - t0 )) s"
