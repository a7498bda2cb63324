# shellcheck shell=bash
# Shared by build_bundle.sh and check_arm64.sh (sourced, not run): arm64 Debian roots under
# qemu user-mode emulation, kept in a cache folder outside the clone so that CI reuses them.
#
#   EDGEPOSE_ARM64_CACHE   cache folder (default /var/cache/edgepose/arm64)
#   EDGEPOSE_DEBIAN_MIRROR Debian mirror for debootstrap (default: the one apt uses here)
#
# Two roots, both Debian bookworm arm64 (Python 3.11), made once by debootstrap:
#   build-root/  python3 + python3-dev + g++: builds the edgepose wheel natively (g++ 12 under qemu)
#   board-root/  python3 only, no compiler: copied fresh for every install check, as a new board

ARM64_SUITE=bookworm
ARM64_PY=3.11
# bump when a root's recipe changes, so a cached root made by an older recipe is rebuilt
ARM64_RECIPE=1
ARM64_BUILD_PKGS=python3,python3-dev,g++
ARM64_BOARD_PKGS=python3
ARM64_CACHE=${EDGEPOSE_ARM64_CACHE:-/var/cache/edgepose/arm64}
ARM64_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# manylinux tags an aarch64 bookworm (glibc 2.36) accepts, for pip download on the host
ARM64_PLATFORMS=(--platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64
                 --platform manylinux_2_27_aarch64 --platform manylinux_2_28_aarch64)

arm64_log() { echo "$ARM64_PROG: $*" >&2; }

# The Debian mirror apt uses on this host (deb822 .sources or one-line sources.list).
arm64_mirror() {
  if [[ -n "${EDGEPOSE_DEBIAN_MIRROR:-}" ]]; then echo "$EDGEPOSE_DEBIAN_MIRROR"; return; fi
  local url
  url=$(grep -hs -E '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' \
        | grep -v -- '-security' | grep '/debian' | head -n1)
  if [[ -z "$url" ]]; then
    url=$(grep -hs -E '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
          | awk '{print $2}' | grep -v -- '-security' | grep '/debian' | head -n1)
  fi
  echo "${url:-http://deb.debian.org/debian}"
}

# Why aarch64 programs cannot run here, or nothing when they can (binfmt_misc + qemu-aarch64).
# As root it installs/registers what is missing; it never changes anything else.
arm64_why_not() {
  local m
  m=$(uname -m)
  if [[ "$m" == aarch64 ]]; then
    return 0
  fi
  if [[ "$m" != x86_64 ]]; then echo "host is $m; this check needs an x86_64 host with qemu or an aarch64 host"; return; fi
  if [[ "$(id -u)" != 0 ]]; then echo "not root: debootstrap, chroot and binfmt_misc need root"; return; fi
  if ! command -v debootstrap >/dev/null || ! command -v update-binfmts >/dev/null \
     || [[ ! -e /usr/libexec/qemu-binfmt/aarch64-binfmt-P && ! -x /usr/bin/qemu-aarch64-static ]]; then
    if command -v apt-get >/dev/null; then
      arm64_log "installing qemu-user-static binfmt-support debootstrap (apt)"
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 \
         --no-install-recommends qemu-user-static binfmt-support debootstrap) >/dev/null 2>&1 \
        || { echo "apt-get could not install qemu-user-static binfmt-support debootstrap"; return; }
    else
      echo "qemu-user-static, binfmt-support and debootstrap are not installed and there is no apt-get"; return
    fi
  fi
  if [[ ! -e /proc/sys/fs/binfmt_misc/register ]]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null \
      || { echo "cannot mount binfmt_misc (a container without the privilege to, or a kernel without it)"; return; }
  fi
  if ! grep -qs '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64; then
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 \
      || { echo "cannot register qemu-aarch64 with binfmt_misc (update-binfmts --enable qemu-aarch64 failed)"; return; }
  fi
  grep -qs '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 || echo "qemu-aarch64 is not enabled in binfmt_misc"
}

# Unmount what arm64_run mounted (called from the scripts' EXIT traps too).
arm64_umount() {
  local root=$1
  if mountpoint -q "$root/proc" 2>/dev/null; then umount -l "$root/proc" 2>/dev/null || true; fi
}

# arm64_run ROOT [--offline] CMD...: run CMD inside ROOT with a clean environment (the host's
# PIP_* settings must not leak in); --offline puts it in a network namespace with no network.
arm64_run() {
  local root=$1; shift
  local pre=()
  if [[ "${1:-}" == --offline ]]; then pre=(unshare --net); shift; fi
  mountpoint -q "$root/proc" 2>/dev/null || mount -t proc proc "$root/proc"
  local rc=0
  "${pre[@]}" chroot "$root" /usr/bin/env -i PATH="$ARM64_PATH" HOME=/root LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 "$@" || rc=$?
  arm64_umount "$root"
  return $rc
}

# arm64_root NAME PKGS: echo the path of a cached root, making it first when absent or stale.
arm64_root() {
  local name=$1 pkgs=$2 dir stamp want
  dir="$ARM64_CACHE/$name"
  stamp="$dir/.edgepose-root"
  want="recipe=$ARM64_RECIPE suite=$ARM64_SUITE include=$pkgs"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && arm64_run "$dir" /bin/true 2>/dev/null; then
    echo "$dir"; return 0
  fi
  arm64_log "making $dir (debootstrap $ARM64_SUITE arm64 from $(arm64_mirror), a few minutes; log $dir.log)"
  arm64_umount "$dir"
  rm -rf "$dir" "$dir.partial"
  mkdir -p "$ARM64_CACHE"
  local t0=$SECONDS
  if ! debootstrap --arch=arm64 --variant=minbase --include="$pkgs" "$ARM64_SUITE" "$dir.partial" \
       "$(arm64_mirror)" >"$dir.log" 2>&1; then
    arm64_umount "$dir.partial"
    arm64_log "debootstrap failed for $name; last lines of $dir.log:"
    tail -n 5 "$dir.log" >&2
    return 1
  fi
  arm64_umount "$dir.partial"
  rm -rf "$dir.partial/var/cache/apt/archives/"*.deb
  echo "$want" >"$dir.partial/.edgepose-root"
  mv "$dir.partial" "$dir"
  arm64_log "made $dir in $((SECONDS - t0)) s ($(du -sm --exclude=proc "$dir" 2>/dev/null | cut -f1) MB)"
  echo "$dir"
}

# arm64_wheels DIR PKG...: aarch64 cp311 wheels of PKG (and their dependencies) into DIR, from DIR
# itself when it already holds them (no network), else from the package index.
arm64_wheels() {
  local dir=$1; shift
  local py=${ARM64_HOST_PY:-python3}
  mkdir -p "$dir"
  local common=(download -q --only-binary=:all: "${ARM64_PLATFORMS[@]}" --python-version "$ARM64_PY"
                --implementation cp -d "$dir")
  if "$py" -m pip "${common[@]}" --no-index --find-links "$dir" "$@" >/dev/null 2>&1; then
    return 0
  fi
  arm64_log "downloading aarch64 wheels: $*"
  "$py" -m pip "${common[@]}" "$@" 2>&1 | grep -v 'is ignored: it is' >&2 || true
  "$py" -m pip "${common[@]}" --no-index --find-links "$dir" "$@" >/dev/null 2>&1 \
    || { arm64_log "could not get aarch64 wheels for: $*"; return 1; }
}
