#!/usr/bin/env bash
# Install (or upgrade) edgepose on an aarch64 Rockchip board from this offline bundle, as root:
#
#   sudo ./install.sh
#
# Needs python3 (the bundle's version, see bundle.env) and nothing else: no compiler, no network,
# not even python3-venv (pip comes from the bundle). What it does:
#   * system user `edgepose` in the groups video and render (created when absent), no login
#   * /opt/edgepose/venv-<version>-<commit>: edgepose + runtime from wheels/ (pip --no-index);
#     /opt/edgepose/venv points at it (the previous one is kept for a rollback, older ones removed)
#   * /opt/edgepose/models/: the bundled model + sidecar; a model already there is never replaced
#   * /etc/edgepose/edgepose.env: the settings; an existing file is kept, the new default is
#     written beside it as edgepose.env.new when it differs
#   * /etc/systemd/system/edgepose.service; daemon-reload + enable only when systemd is running
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
die() { echo "install.sh: $*" >&2; exit 2; }
say() { echo "install.sh: $*"; }

PREFIX=/opt/edgepose
ETC=/etc/edgepose
UNIT=/etc/systemd/system/edgepose.service
USER_NAME=edgepose

[[ -f "$here/bundle.env" ]] || die "$here/bundle.env missing; run install.sh from an unpacked bundle (firmware/build_bundle.sh)"
# shellcheck source=/dev/null
source "$here/bundle.env"
[[ "$(id -u)" == 0 ]] || die "run as root (sudo ./install.sh): it creates a system user and installs a service"
[[ "$(uname -m)" == aarch64 ]] || die "this is $(uname -m); the bundle is for aarch64 boards"
command -v python3 >/dev/null || die "python3 not found; the bundle needs the board's Python $BUNDLE_PYTHON"
have_py=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[[ "$have_py" == "$BUNDLE_PYTHON" ]] \
  || die "python3 is $have_py but the bundle's wheels are for $BUNDLE_PYTHON (Debian 12 bookworm-based images); on this image install from a checkout with firmware/install_board.sh (compiles on the board, needs the network)"
(cd "$here" && sha256sum --quiet -c SHA256SUMS) >/dev/null 2>&1 \
  || die "$here: files differ from SHA256SUMS (damaged or edited bundle); copy the bundle again"

# --- user and groups
for g in video render; do
  getent group "$g" >/dev/null || { groupadd --system "$g"; say "created group $g"; }
done
if ! id "$USER_NAME" >/dev/null 2>&1; then
  useradd --system --user-group --home-dir /var/lib/edgepose --no-create-home \
    --shell /usr/sbin/nologin --comment "edgepose service" "$USER_NAME"
  say "created system user $USER_NAME"
fi
usermod -a -G video,render "$USER_NAME"

# --- the virtual environment (a new one per version; the link switches at the end)
install -d -m 0755 "$PREFIX" "$PREFIX/models"
venv="$PREFIX/venv-$BUNDLE_VERSION-$BUNDLE_COMMIT"
check_venv() {
  "$1/bin/python" -c 'import edgepose, cv2, sys
from rknnlite.api import RKNNLite  # noqa: F401
sys.exit(0 if edgepose.implementation() == "native" else "edgepose: native kernels did not load")'
}
if [[ -x "$venv/bin/python" ]] && check_venv "$venv" 2>/dev/null; then
  say "edgepose $BUNDLE_VERSION ($BUNDLE_COMMIT) is already installed in $venv"
else
  rm -rf "$venv"
  say "installing edgepose $BUNDLE_VERSION ($BUNDLE_COMMIT) and $BUNDLE_RUNTIME into $venv (offline)"
  python3 -m venv --without-pip "$venv"
  pip_whl=$(ls "$here"/wheels/pip-*.whl | head -n1)
  # pip runs from its own wheel to install itself into the venv: python3-venv/ensurepip not needed
  "$venv/bin/python" "$pip_whl/pip" install -q --no-index --find-links "$here/wheels" pip
  "$venv/bin/python" -m pip install -q --no-index --find-links "$here/wheels" edgepose "$BUNDLE_RUNTIME"
  if ! check_venv "$venv"; then
    rm -rf "$venv"
    die "the new environment does not import (see above); the installed one is untouched"
  fi
fi
previous=$(readlink "$PREFIX/venv" 2>/dev/null || true)
ln -sfn "$(basename "$venv")" "$PREFIX/venv.new"
mv -T "$PREFIX/venv.new" "$PREFIX/venv"
for old in "$PREFIX"/venv-*; do
  [[ "$(basename "$old")" == "$(basename "$venv")" || "$(basename "$old")" == "$previous" ]] || rm -rf "$old"
done

# --- the model: never replace one already installed
model_src="$here/model/$BUNDLE_MODEL"
model_dst="$PREFIX/models/$BUNDLE_MODEL"
if [[ -e "$model_dst" ]] && cmp -s "$model_src" "$model_dst" && cmp -s "$model_src.json" "$model_dst.json"; then
  say "model $model_dst already installed"
elif [[ -e "$model_dst" || -e "$model_dst.json" ]]; then
  tag=$(sha256sum "$model_src" | cut -c1-8)
  model_dst="$PREFIX/models/${BUNDLE_MODEL%.rknn}.$tag.rknn"
  install -m 0644 "$model_src" "$model_dst"
  install -m 0644 "$model_src.json" "$model_dst.json"
  say "a different $BUNDLE_MODEL is installed and kept; the bundle's model went to $model_dst"
else
  install -m 0644 "$model_src" "$model_dst"
  install -m 0644 "$model_src.json" "$model_dst.json"
  say "installed model $model_dst"
fi

# --- settings: the user's file stays; root-owned, readable by the service (it may hold a token)
install -d -m 0755 "$ETC"
default=$(mktemp)
trap 'rm -f "$default"' EXIT
sed "s#^EDGEPOSE_MODEL=.*#EDGEPOSE_MODEL=$PREFIX/models/$BUNDLE_MODEL#" "$here/edgepose.env" >"$default"
if [[ ! -e "$ETC/edgepose.env" && -f /etc/default/edgepose ]]; then
  # an installation by the older firmware/install_board.sh: its settings carry over
  install -m 0640 -g "$USER_NAME" /etc/default/edgepose "$ETC/edgepose.env"
  say "kept the settings of /etc/default/edgepose as $ETC/edgepose.env"
fi
if [[ ! -e "$ETC/edgepose.env" ]]; then
  install -m 0640 -g "$USER_NAME" "$default" "$ETC/edgepose.env"
  say "wrote settings $ETC/edgepose.env"
elif ! cmp -s "$default" "$ETC/edgepose.env"; then
  install -m 0640 -g "$USER_NAME" "$default" "$ETC/edgepose.env.new"
  say "kept your $ETC/edgepose.env; the new default is beside it as edgepose.env.new"
fi

# --- the service
install -m 0644 "$here/edgepose.service" "$UNIT"
"$PREFIX/venv/bin/python" -m edgepose.service --check "$ETC/edgepose.env" \
  || say "fix $ETC/edgepose.env before starting the service (the line above says what)"
if [[ -d /run/systemd/system ]]; then
  systemctl daemon-reload
  systemctl enable edgepose.service >/dev/null
  if systemctl is-active --quiet edgepose.service; then
    systemctl restart edgepose.service
    say "restarted edgepose.service"
  else
    say "enabled edgepose.service; start it with: systemctl start edgepose"
  fi
else
  say "systemd is not running here; on the board: systemctl daemon-reload && systemctl enable --now edgepose"
fi
"$PREFIX/venv/bin/edgepose" info --model "$model_dst" || true
say "done: edgepose $BUNDLE_VERSION in $venv"
