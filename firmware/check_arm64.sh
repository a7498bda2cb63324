#!/usr/bin/env bash
# CI check of the board path, on the x86 host, under qemu (see firmware/README.md):
#
#   bash firmware/check_arm64.sh
#
#  1. makes (or reuses, from EDGEPOSE_ARM64_CACHE, default /var/cache/edgepose/arm64) two arm64
#     Debian bookworm roots: a build root (g++) and a board root (python3 only, no compiler);
#  2. builds a small INT8 .rknn with the host's rknn-toolkit2, then the offline bundle with
#     firmware/build_bundle.sh (edgepose's native core compiled in the arm64 build root);
#  3. unpacks the bundle into a fresh copy of the board root and runs its install.sh there with
#     the network off; checks the user, groups, venv, model, settings; installs again over it
#     with edited settings (an upgrade) and checks that the settings and the model are kept;
#  4. runs edgepose's kernel and runtime tests there against the installed wheel;
#  5. checks that the real RKNNLite loads the bundled model and stops at its no-NPU error,
#     reported by edgepose in one line; checks the launcher's token rule;
#  6. systemd-analyze verify on the installed unit (host systemd, --root of the board copy).
#
# Where aarch64 programs cannot run (no binfmt_misc/qemu, not root), it says why in one line and
# exits 0, or 1 with CI_REQUIRE_ARM64=1. Set EDGEPOSE_ARM64_KEEP=1 to keep the work folder.
set -euo pipefail
ARM64_PROG=check_arm64
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# third-party test data is read in place, never part of the repository (tests/conftest.py)
data=$(cd "${EDGEPOSE_TEST_DATA:-$repo/../shared/data}" 2>/dev/null && pwd) \
  || { echo "check_arm64: needs the shared test data (set EDGEPOSE_TEST_DATA)" >&2; exit 2; }
# shellcheck source=firmware/arm64_root.sh
source "$here/arm64_root.sh"
t0=$SECONDS
elapsed() { local s=$((SECONDS - t0)); printf '%dm%02ds' $((s / 60)) $((s % 60)); }
stage() { arm64_log "[$1] $2 (at $(elapsed))"; }
fail() { arm64_log "FAILED after $(elapsed): $*"; exit 1; }

why=$(arm64_why_not)
if [[ -n "$why" ]]; then
  if [[ "${CI_REQUIRE_ARM64:-0}" == 1 ]]; then
    arm64_log "FAILED: cannot run aarch64 programs here: $why (CI_REQUIRE_ARM64=1)"; exit 1
  fi
  arm64_log "SKIPPED: cannot run aarch64 programs here: $why (set CI_REQUIRE_ARM64=1 to make this an error)"
  exit 0
fi
py=${PYTHON:-$repo/.venv/bin/python}
[[ -x "$py" ]] || fail "$py: the host venv is missing; run make setup first (it has rknn-toolkit2 to build the test model)"
warm=cold
[[ -f "$ARM64_CACHE/build-root/.edgepose-root" && -f "$ARM64_CACHE/board-root/.edgepose-root" ]] && warm=warm

work=$(mktemp -d "${TMPDIR:-/tmp}/edgepose_arm64.XXXXXX")
board=$work/board
cleanup() {
  arm64_umount "$board"
  if [[ "${EDGEPOSE_ARM64_KEEP:-0}" == 1 ]]; then arm64_log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

stage 1/7 "arm64 roots in $ARM64_CACHE ($warm), test model and test wheels (in parallel)"
mkdir -p "$ARM64_CACHE"
(
  exec 9>"$ARM64_CACHE/.lock"; flock 9
  arm64_root build-root "$ARM64_BUILD_PKGS" >/dev/null &
  b=$!
  arm64_root board-root "$ARM64_BOARD_PKGS" >/dev/null || exit 1
  wait $b
) >"$work/roots.log" 2>&1 &
roots_pid=$!
# the model: a tiny PoseResNet-like ONNX, INT8 for rk3588 with calibration crops of the COCO sample
(
  cd "$repo"
  export PYTHONPATH=$repo
  "$py" - "$work" <<'PY'
import sys
from pathlib import Path
from host_tools.demo import export_untrained_onnx
w = Path(sys.argv[1])
export_untrained_onnx(w / "model.onnx", layers=0, dynamic_batch=False, seed=0)
PY
  "$py" -m host_tools build-rknn "$work/model.onnx" -o "$work/pose_tiny.rknn" --target rk3588 \
    --calib-ann "$data/coco_mini/test_coco.json" --images "$data/coco_mini"
) >"$work/model.log" 2>&1 || { tail -n 5 "$work/model.log" >&2; fail "could not build the test .rknn (log above)"; }
ARM64_HOST_PY=$py arm64_wheels "$ARM64_CACHE/wheels" pytest hypothesis onnxruntime onnx numpy==2.4.6 \
  || fail "could not get the aarch64 test wheels"
wait $roots_pid || { cat "$work/roots.log" >&2; fail "could not make the arm64 roots"; }
cat "$work/roots.log" >&2

stage 2/7 "bundle (firmware/build_bundle.sh)"
PYTHON=$py bash "$here/build_bundle.sh" "$work/pose_tiny.rknn" -o "$work/edgepose-bundle" >/dev/null \
  || fail "build_bundle.sh failed"
bundle_mb=$(du -sm "$work/edgepose-bundle.tar" | cut -f1)
[[ "$(ls "$work"/edgepose-bundle/wheels | grep -c linux_aarch64)" -ge 1 ]] || fail "no aarch64 wheel in the bundle"

stage 3/7 "install into a fresh board root, network off (a board with another Python is refused first)"
exec 9>"$ARM64_CACHE/.lock"; flock -s 9   # the cached roots must not be rebuilt under us
cp -a "$ARM64_CACHE/board-root" "$board"
tar -xf "$work/edgepose-bundle.tar" -C "$board/root"
if arm64_run "$board" sh -c 'command -v gcc || command -v cc || command -v g++' >/dev/null; then
  fail "the board root has a compiler; the install must be proven without one"
fi
# a board whose Python is not the bundle's is refused in one line, before anything is written
cp -a "$board/root/edgepose-bundle" "$board/root/other-python"
sed -i 's/^BUNDLE_PYTHON=.*/BUNDLE_PYTHON=3.10/' "$board/root/other-python/bundle.env"
set +e
refusal=$(arm64_run "$board" --offline bash /root/other-python/install.sh 2>&1)
refusal_rc=$?
set -e
rm -rf "$board/root/other-python"
[[ $refusal_rc == 2 && $(printf '%s\n' "$refusal" | wc -l) == 1 && "$refusal" == *"install_board.sh"* ]] \
  || fail "install.sh on another Python: expected one line naming install_board.sh, exit 2; got ($refusal_rc): $refusal"
[[ ! -e "$board/opt/edgepose" && ! -e "$board/etc/edgepose" ]] || fail "the refused install.sh wrote files"
arm64_run "$board" --offline bash /root/edgepose-bundle/install.sh >"$work/install1.log" 2>&1 \
  || { cat "$work/install1.log" >&2; fail "install.sh failed (offline, no compiler)"; }
grep 'install.sh:' "$work/install1.log" | sed 's/^/    /' >&2
arm64_run "$board" sh -c 'id -nG edgepose' | tr ' ' '\n' | grep -qx video || fail "user edgepose is not in video"
arm64_run "$board" sh -c 'id -nG edgepose' | tr ' ' '\n' | grep -qx render || fail "user edgepose is not in render"
[[ "$(arm64_run "$board" sh -c 'id -u edgepose')" -lt 1000 ]] || fail "edgepose is not a system user"
impl=$(arm64_run "$board" /opt/edgepose/venv/bin/python -c 'import edgepose, platform; print(platform.machine(), edgepose.implementation())')
[[ "$impl" == "aarch64 native" ]] || fail "installed edgepose reports '$impl', expected 'aarch64 native'"
[[ -f "$board/opt/edgepose/models/pose_tiny.rknn.json" ]] || fail "the model's sidecar was not installed"
grep -q '^EDGEPOSE_MODEL=/opt/edgepose/models/pose_tiny.rknn$' "$board/etc/edgepose/edgepose.env" \
  || fail "the settings do not name the bundled model"

stage 4/7 "upgrade over it: edited settings and models are kept"
sed -i 's/^EDGEPOSE_CAMERA=.*/EDGEPOSE_CAMERA=2/' "$board/etc/edgepose/edgepose.env"
cp "$board/opt/edgepose/models/pose_tiny.rknn" "$work/model.before"
printf 'user data\n' >>"$board/opt/edgepose/models/pose_tiny.rknn"     # a model that differs now
arm64_run "$board" --offline bash /root/edgepose-bundle/install.sh >"$work/install2.log" 2>&1 \
  || { cat "$work/install2.log" >&2; fail "the second install.sh (upgrade) failed"; }
grep -q '^EDGEPOSE_CAMERA=2$' "$board/etc/edgepose/edgepose.env" || fail "the upgrade lost the edited settings"
[[ -f "$board/etc/edgepose/edgepose.env.new" ]] || fail "the upgrade did not write edgepose.env.new"
tail -c 10 "$board/opt/edgepose/models/pose_tiny.rknn" | grep -q 'user data' || fail "the upgrade replaced a model"
ls "$board"/opt/edgepose/models/pose_tiny.*.rknn >/dev/null 2>&1 || fail "the upgrade did not install the new model beside"
cp "$work/model.before" "$board/opt/edgepose/models/pose_tiny.rknn"

stage 5/7 "kernel and runtime tests under qemu (installed wheel, no torch: tests/_models.py writes the tiny ONNX with onnx.helper)"
mkdir -p "$board/root/check" "$board/root/testwheels"
cp -r "$repo/tests" "$repo/pyproject.toml" "$board/root/check/"
mkdir -p "$board/root/check/data" && cp -r "$data/coco_mini" "$data/posetrack_mini" "$data/video" "$board/root/check/data/"
cp "$ARM64_CACHE"/wheels/*.whl "$board/root/testwheels/"
arm64_run "$board" sh -c '/opt/edgepose/venv/bin/python -m pip install -q --no-index --find-links /root/testwheels \
    --target /root/testlibs pytest hypothesis onnxruntime onnx && rm -rf /root/testlibs/numpy /root/testlibs/numpy-*' \
  >"$work/testlibs.log" 2>&1 || { tail -n 5 "$work/testlibs.log" >&2; fail "could not install pytest/onnxruntime for the tests"; }
tests=(tests/test_crop.py tests/test_decode.py tests/test_nms.py tests/test_geometry.py tests/test_dispatch.py
       tests/test_runtime_rknnlite.py tests/test_runtime_estimator.py tests/test_runtime_tracking.py
       tests/test_service.py)
if ! arm64_run "$board" sh -c "cd /root/check && EDGEPOSE_REQUIRE_NATIVE=1 EDGEPOSE_TEST_DATA=/root/check/data \
      PYTHONPATH=/root/testlibs /opt/edgepose/venv/bin/python -m pytest -q -p no:cacheprovider ${tests[*]}" \
      >"$work/pytest.log" 2>&1; then
  tail -n 30 "$work/pytest.log" >&2
  fail "tests failed under qemu"
fi
summary=$(tail -n 1 "$work/pytest.log")
arm64_log "    pytest under qemu: $summary"

stage 6/7 "the real RKNNLite up to its no-NPU error; the launcher's token rule"
set +e
info=$(arm64_run "$board" /opt/edgepose/venv/bin/edgepose info --model /opt/edgepose/models/pose_tiny.rknn 2>&1)
info_rc=$?
run_err=$(arm64_run "$board" /opt/edgepose/venv/bin/edgepose run --image /root/check/data/coco_mini/000000000785.jpg \
  --model /opt/edgepose/models/pose_tiny.rknn 2>&1 >/dev/null)
run_rc=$?
set -e
echo "$info" | grep -Eq 'backend: +rknnlite: NOT READY .*Please specify the target in init_runtime' || { echo "$info" >&2; fail "edgepose info did not report RKNNLite NOT READY"; }
echo "$info" | grep -Eq 'kernels: +native' || { echo "$info" >&2; fail "edgepose info does not show the native kernels"; }
[[ $info_rc == 1 ]] || fail "edgepose info exited $info_rc off the NPU, expected 1"
[[ $run_rc == 2 && "$(echo "$run_err" | grep -c .)" == 1 ]] \
  || { echo "$run_err" >&2; fail "edgepose run off the NPU: expected one line and exit 2 (got $run_rc)"; }
echo "$run_err" | grep -q 'init_runtime' || { echo "$run_err" >&2; fail "the one line does not name init_runtime"; }
arm64_log "    $run_err"
cp "$board/etc/edgepose/edgepose.env" "$work/env.saved"
sed -i 's/^EDGEPOSE_SERVE=.*/EDGEPOSE_SERVE=0.0.0.0:8080/' "$board/etc/edgepose/edgepose.env"
set +e
refuse=$(arm64_run "$board" /opt/edgepose/venv/bin/python -m edgepose.service --check /etc/edgepose/edgepose.env 2>&1)
refuse_rc=$?
set -e
[[ $refuse_rc == 2 && "$refuse" == *"without EDGEPOSE_TOKEN"* ]] \
  || { echo "$refuse" >&2; fail "the launcher did not refuse 0.0.0.0 without a token"; }
sed -i 's/^EDGEPOSE_TOKEN=.*/EDGEPOSE_TOKEN=0123456789abcdef0123/' "$board/etc/edgepose/edgepose.env"
arm64_run "$board" /opt/edgepose/venv/bin/python -m edgepose.service --check /etc/edgepose/edgepose.env >/dev/null \
  || fail "the launcher refused 0.0.0.0 with a token"
cp "$work/env.saved" "$board/etc/edgepose/edgepose.env"

stage 7/7 "systemd-analyze verify on the installed unit"
command -v systemd-analyze >/dev/null || fail "systemd-analyze not found on the host (apt-get install systemd)"
# the board root has no systemd: give the check the host's unit library (targets it refers to)
mkdir -p "$board/usr/lib/systemd"
cp -r /usr/lib/systemd/system "$board/usr/lib/systemd/"
set +e
systemd-analyze verify --root="$board" /etc/systemd/system/edgepose.service >"$work/verify.log" 2>&1
verify_rc=$?
set -e
cat "$work/verify.log" >&2
[[ $verify_rc == 0 && ! -s "$work/verify.log" ]] || fail "systemd-analyze verify reported problems (above)"

arm64_log "OK in $(elapsed) ($warm cache $ARM64_CACHE): bundle ${bundle_mb} MB, install offline without a compiler, \
upgrade kept settings+model, pytest under qemu: $summary, RKNNLite stops at init_runtime, unit verified"
