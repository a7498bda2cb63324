#!/usr/bin/env bash
# Build an offline deploy bundle for an aarch64 Rockchip board, on the x86 host:
#
#   firmware/build_bundle.sh MODEL.rknn -o DIR [--runtime-wheel WHEEL]
#
# DIR (new) then holds: wheels/ (edgepose for cp311 aarch64 with its native core compiled for the
# board, numpy, opencv-python-headless, rknn-toolkit-lite2 and their dependencies, pip), model/
# (the .rknn and its .rknn.json sidecar), edgepose.service, edgepose.env, install.sh (no compiler,
# no network on the board), SHA256SUMS; and DIR.tar beside it, the one file to copy to the board.
#
# The edgepose wheel is built natively inside an arm64 Debian bookworm root under qemu (g++ 12,
# Python 3.11 headers: exactly the board's toolchain), see firmware/README.md for why.
# Roots and downloaded wheels are cached in EDGEPOSE_ARM64_CACHE (default /var/cache/edgepose/arm64).
set -euo pipefail
ARM64_PROG=build_bundle.sh
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=firmware/arm64_root.sh
source "$here/arm64_root.sh"

die() { echo "build_bundle.sh: $*" >&2; exit 2; }
usage="usage: firmware/build_bundle.sh MODEL.rknn -o DIR [--runtime-wheel rknn_toolkit_lite-....whl]"

model="" out="" runtime_wheel=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    -o|--output) [[ $# -ge 2 ]] || die "-o needs a folder; $usage"; out=$2; shift 2 ;;
    --runtime-wheel) [[ $# -ge 2 ]] || die "--runtime-wheel needs a .whl; $usage"; runtime_wheel=$2; shift 2 ;;
    -h|--help) echo "$usage"; exit 0 ;;
    -*) die "unknown option $1; $usage" ;;
    *) [[ -z "$model" ]] || die "one model only (got $model and $1); $usage"; model=$1; shift ;;
  esac
done
[[ -n "$model" && -n "$out" ]] || die "$usage"
[[ -f "$model" ]] || die "$model: model not found"
[[ "$model" == *.rknn ]] || die "$model: expected a .rknn built by host_tools build-rknn"
[[ -f "$model.json" ]] || die "$model.json: the model's sidecar is missing; build the model with host_tools build-rknn, which writes it"
if [[ -e "$out" ]] && [[ -n "$(ls -A "$out" 2>/dev/null)" || ! -d "$out" ]]; then
  die "-o $out: exists and is not an empty folder; choose a new folder (a bundle is never written over)"
fi
[[ ! -e "$out.tar" ]] || die "-o $out: $out.tar exists; remove it or choose another folder"

# The sidecar's target decides the runtime: only aarch64 boards with a Python NPU runtime qualify.
host_py=${PYTHON:-}
[[ -n "$host_py" ]] || { [[ -x "$repo/.venv/bin/python" ]] && host_py="$repo/.venv/bin/python"; } || host_py=python3
runtime=$("$host_py" - "$model.json" "$runtime_wheel" <<'PY'
import json, re, sys
from pathlib import Path
side, wheel = sys.argv[1], sys.argv[2]
try:
    target = str(json.loads(Path(side).read_text()).get("target") or "").lower()
except (OSError, ValueError) as exc:
    sys.exit(f"build_bundle.sh: {side}: not a readable sidecar ({exc}); rebuild it with host_tools build-rknn")
lite2 = ("rk3562", "rk3566", "rk3568", "rk3576", "rk3588")
if target in lite2:
    if wheel:
        sys.exit(f"build_bundle.sh: --runtime-wheel: {target} uses rknn-toolkit-lite2 from board-requirements.txt; drop the option")
    print("rknn-toolkit-lite2")
elif target == "rk1808":
    # aarch64, but its runtime is rknn-toolkit-lite 1.x (Rockchip's GitHub wheels, not on PyPI)
    m = re.match(r"rknn_toolkit_lite-1\.[\d.]+-(cp\d+)-[^-]+-linux_aarch64\.whl$", Path(wheel).name) if wheel else None
    if not wheel:
        sys.exit("build_bundle.sh: rk1808 runs rknn-toolkit-lite 1.x, which is not on PyPI: pass --runtime-wheel "
                 "rknn_toolkit_lite-1.7.5-cpXY-cpXY-linux_aarch64.whl (from github.com/rockchip-linux/rknn-toolkit)")
    if not m or not Path(wheel).is_file():
        sys.exit(f"build_bundle.sh: --runtime-wheel {wheel}: expected an existing rknn_toolkit_lite-1.x-...-linux_aarch64.whl")
    if m.group(1) != "cp311":
        sys.exit(f"build_bundle.sh: --runtime-wheel {wheel}: built for {m.group(1)}, but this bundle is for CPython 3.11 "
                 "(Debian bookworm); toolkit-lite 1.7.5 stops at cp310, so an RK1808 needs a Python <= 3.10 image and bundle")
    print("rknn-toolkit-lite")
elif target in ("rv1109", "rv1126"):
    sys.exit(f"build_bundle.sh: {side}: target {target} is a 32-bit ARM (armhf) board; this bundle is for aarch64 NPUs "
             f"(rk3562/rk3566/rk3568/rk3576/rk3588, rk1808); see firmware/README.md for {target}")
elif target in ("rv1106", "rv1103"):
    sys.exit(f"build_bundle.sh: {side}: target {target} has no Python NPU runtime (C API only); "
             "bundles are for rk3562/rk3566/rk3568/rk3576/rk3588 and rk1808")
else:
    sys.exit(f"build_bundle.sh: {side}: target {target or '(none)'} is not an aarch64 NPU; rebuild the model with "
             "host_tools build-rknn --target rk3588 (or rk3562/rk3566/rk3568/rk3576)")
PY
) || exit 2

why=$(arm64_why_not)
[[ -z "$why" ]] || die "cannot build the aarch64 wheel here: $why"

mkdir -p "$ARM64_CACHE"
exec 9>"$ARM64_CACHE/.lock"
flock 9
t0=$SECONDS
stage() { arm64_log "[$1] $2 ($((SECONDS - t0)) s)"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/edgepose_bundle.XXXXXX")
build=""
cleanup() { [[ -n "$build" ]] && arm64_umount "$build"; rm -rf "$work"; }
trap cleanup EXIT

stage 1/5 "aarch64 wheels (cache $ARM64_CACHE/wheels)"
ARM64_HOST_PY=$host_py arm64_wheels "$ARM64_CACHE/wheels" -r "$here/board-requirements.txt"
build_reqs=(setuptools==84.2.1 wheel==0.48.0 pybind11==3.1.0 pip==26.3)
ARM64_HOST_PY=$host_py arm64_wheels "$ARM64_CACHE/wheels" "${build_reqs[@]}"

stage 2/5 "arm64 build root"
build=$(arm64_root build-root "$ARM64_BUILD_PKGS")
if [[ ! -x "$build/opt/edgepose-build/bin/pip" ]]; then
  rm -rf "$build/opt/edgepose-build" "$build/wheels"
  mkdir -p "$build/wheels"
  cp "$ARM64_CACHE"/wheels/{setuptools,wheel,pybind11,pip,packaging}-*.whl "$build/wheels/"
  pip_whl=$(cd "$build/wheels" && ls pip-*.whl | head -n1)
  arm64_run "$build" /bin/sh -c "python3 -m venv --without-pip /opt/edgepose-build && \
    /opt/edgepose-build/bin/python /wheels/$pip_whl/pip install -q --no-index --find-links /wheels \
      pip setuptools wheel pybind11"
fi

stage 3/5 "edgepose wheel: native core compiled in the arm64 root (g++ under qemu, a few minutes)"
rm -rf "$build/src" "$build/out"
mkdir -p "$build/src" "$build/out"
if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "$repo" && git ls-files -z -co --exclude-standard | grep -zv '^tests/data/' | tar --null -cf - -T -) \
    | tar -xf - -C "$build/src"
else
  tar -C "$repo" --exclude=./.venv --exclude=./build --exclude='*.so' --exclude=./tests/data -cf - . | tar -xf - -C "$build/src"
fi
rm -rf "$build/src/build" "$build/src"/edgepose/*.so
if ! arm64_run "$build" /bin/sh -c 'cd /src && EDGEPOSE_REQUIRE_NATIVE=1 /opt/edgepose-build/bin/pip wheel -q \
      --no-index --find-links /wheels --no-build-isolation --no-deps -w /out .' >"$work/wheel.log" 2>&1; then
  grep -E 'error|Error' "$work/wheel.log" | head -n 5 >&2 || tail -n 5 "$work/wheel.log" >&2
  die "the aarch64 wheel did not build (above: the compiler's first errors)"
fi
whl=$(ls "$build"/out/edgepose-*-cp311-cp311-linux_aarch64.whl 2>/dev/null | head -n1)
[[ -n "$whl" ]] || die "pip wheel wrote no edgepose-*-cp311-cp311-linux_aarch64.whl"
"$host_py" - "$whl" <<'PY' || die "the edgepose wheel has no aarch64 native core"
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
sys.exit(0 if "edgepose/_native.cpython-311-aarch64-linux-gnu.so" in names else 1)
PY

stage 4/5 "assembling $out"
mkdir -p "$work/b/wheels" "$work/b/model"
cp "$whl" "$work/b/wheels/"
# runtime wheels: exactly the pinned set plus its dependencies (what pip resolves offline)
ARM64_HOST_PY=$host_py arm64_wheels "$work/b/wheels" --no-index --find-links "$ARM64_CACHE/wheels" \
  -r "$here/board-requirements.txt"
if [[ -n "$runtime_wheel" ]]; then
  rm -f "$work"/b/wheels/rknn_toolkit_lite2-*.whl
  cp "$runtime_wheel" "$work/b/wheels/"
fi
cp "$model" "$model.json" "$work/b/model/"
cp "$here/edgepose.service" "$here/edgepose.env" "$here/install.sh" "$work/b/"
chmod 0755 "$work/b/install.sh"
version=$(basename "$whl" | cut -d- -f2)
commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
cat >"$work/b/bundle.env" <<EOF
# written by firmware/build_bundle.sh; read by install.sh
BUNDLE_VERSION=$version
BUNDLE_COMMIT=$commit
BUNDLE_PYTHON=$ARM64_PY
BUNDLE_RUNTIME=$runtime
BUNDLE_MODEL=$(basename "$model")
BUNDLE_TARGET=$("$host_py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["target"])' "$model.json")
EOF
(cd "$work/b" && find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort | xargs sha256sum >SHA256SUMS)

stage 5/5 "writing $out and $out.tar"
mkdir -p "$out"
cp -r "$work/b/." "$out/"
name=$(basename "$out")
tar -C "$(dirname "$out")" -cf "$out.tar" "$name"
size=$(du -sm "$out.tar" | cut -f1)
arm64_log "bundle $out ($size MB as $out.tar, edgepose $version for $(grep ^BUNDLE_TARGET "$out/bundle.env" | cut -d= -f2), runtime $runtime) in $((SECONDS - t0)) s"
echo "$out"
