#!/usr/bin/env bash
# The whole test suite a second time, in a fresh venv made the way a new user makes one:
# `pip install -e ".[host,test]"`, which resolves to the newest numpy / opencv-python-headless /
# onnxruntime / onnx that pip finds today (torch is pinned to 2.13.0 and taken from the CPU wheel
# on disk, never a CUDA build from the registry). Only what needs rknn-toolkit2's old pins
# (numpy<=1.26.4, onnx<=1.18) is skipped, with its reason. Prints the versions it used.
#   bash .ci/newest.sh              (venv: ./.venv-newest, or $NEWEST_VENV)
# The editable install builds the native core in place, so it runs in a copy of the checkout's
# files in a temp dir: the checkout's own build (what `make test` uses) is never touched.
# Third-party data and real models are read in place through absolute paths.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC="$(pwd)"
VENV="${NEWEST_VENV:-.venv-newest}"
PYTHON="${PYTHON:-python3}"
TORCH_WHEELS="${TORCH_WHEELS:-/opt/wheels}"
export EDGEPOSE_TEST_DATA="$(realpath -m "${EDGEPOSE_TEST_DATA:-$SRC/../shared/data}")"
export EDGEPOSE_TEST_MODELS="$(realpath -m "${EDGEPOSE_TEST_MODELS:-$SRC/../shared/models}")"
t0=$(date +%s)

# torch: the CPU wheel on disk. Letting pip resolve `torch==2.13.0` from the registry would pull
# the multi-GB CUDA build, so without the wheel this refuses in one line.
shopt -s nullglob
wheels=("$TORCH_WHEELS"/torch-2.13.0+cpu-*.whl)
shopt -u nullglob
if [ ${#wheels[@]} -eq 0 ]; then
  echo "newest: no CPU torch 2.13.0 wheel in $TORCH_WHEELS (set TORCH_WHEELS to the folder that holds torch-2.13.0+cpu-*.whl)" >&2
  exit 2
fi

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
VENV="$(cd "$VENV" && pwd)"
PY="$VENV/bin/python"
quiet() { grep -v "is ignored: it is neither a file nor a directory" || true; }  # this machine's pip config
"$PY" -m pip install -q --upgrade pip 2>&1 | quiet
"$PY" -m pip install -q "${wheels[0]}" 2>&1 | quiet

# a copy of the checkout's files (tracked and new, not ignored ones: no venv, no build, no .so)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if git -C "$SRC" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (git -C "$SRC" ls-files -z --cached --others --exclude-standard \
     | (cd "$SRC" && xargs -0 tar -cf - --ignore-failed-read 2>/dev/null)) | tar -xf - -C "$work"
else
  tar -C "$SRC" --exclude=.venv --exclude='.venv-*' --exclude=build --exclude='*.so' -cf - . | tar -xf - -C "$work"
fi

# no pins on purpose (bar torch): the newest releases of everything the extras name
(cd "$work" && EDGEPOSE_REQUIRE_NATIVE=1 "$PY" -m pip install -q -e ".[host,test]" 2>&1 | quiet)
"$PY" - <<'PY'
import sys, numpy, cv2, onnxruntime, onnx, torch, edgepose
assert torch.version.cuda is None, f"newest: torch {torch.__version__} is a CUDA build"
print(f"newest: python {sys.version.split()[0]}, numpy {numpy.__version__}, opencv-python-headless "
      f"{cv2.__version__}, onnxruntime {onnxruntime.__version__}, onnx {onnx.__version__}, torch "
      f"{torch.__version__}; edgepose kernels: {edgepose.implementation()}")
PY
echo "newest: installed in $(( $(date +%s) - t0 )) s; data: $EDGEPOSE_TEST_DATA, models: $EDGEPOSE_TEST_MODELS"
# rknn-toolkit2 pins numpy<=1.26.4 and onnx<=1.18, so it cannot live in this venv: its tests
# (marker `rknn`, and importorskip("rknn.api") elsewhere) skip here and run in `make test`.
rc=0
(cd "$work" && EDGEPOSE_REQUIRE_NATIVE=1 "$PY" -m pytest -q -p no:cacheprovider -rs \
  -m "not rknn and not board" tests) || rc=$?
echo "newest: done in $(( $(date +%s) - t0 )) s"
exit "$rc"
