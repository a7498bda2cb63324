#!/usr/bin/env bash
# Install edgepose on a Rockchip aarch64 board from a checkout, compiling on the board and using its
# network: ./firmware/install_board.sh MODEL.rknn  (the offline route is firmware/build_bundle.sh)
set -euo pipefail
model=${1:-}
if [[ -z "$model" || ! -f "$model" ]]; then
  echo "install_board.sh: give the .rknn model to install (its .rknn.json sidecar must sit beside it)" >&2
  exit 2
fi
if [[ ! -f "$model.json" ]]; then
  echo "install_board.sh: $model.json is missing; build the model with host_tools build-rknn, which writes it" >&2
  exit 2
fi
if [[ "$(uname -m)" != "aarch64" ]]; then
  echo "install_board.sh: this is $(uname -m), not an aarch64 board; rknn-toolkit-lite2 ships aarch64 wheels only" >&2
  exit 2
fi
repo=$(cd "$(dirname "$0")/.." && pwd)
apt-get install -y --no-install-recommends python3-venv python3-dev g++ >/dev/null
python3 -m venv /opt/edgepose/venv
/opt/edgepose/venv/bin/pip install -q --upgrade pip
EDGEPOSE_REQUIRE_NATIVE=1 /opt/edgepose/venv/bin/pip install -q "$repo" onnxruntime rknn-toolkit-lite2
install -d /opt/edgepose/models
name=$(basename "$model")
# never overwrite a model already installed under the same name
if [[ -e /opt/edgepose/models/$name ]]; then
  echo "install_board.sh: /opt/edgepose/models/$name exists; remove it first or rename the new model" >&2
  exit 2
fi
install -m 0644 "$model" "$model.json" /opt/edgepose/models/
# the service runs as its own system user (see edgepose.service); settings in /etc/edgepose
for g in video render; do getent group "$g" >/dev/null || groupadd --system "$g"; done
id edgepose >/dev/null 2>&1 || useradd --system --user-group --home-dir /var/lib/edgepose --no-create-home \
  --shell /usr/sbin/nologin edgepose
usermod -a -G video,render edgepose
install -d -m 0755 /etc/edgepose
if [[ -f /etc/edgepose/edgepose.env ]]; then
  # the user's settings stay as they are
  echo "install_board.sh: keeping /etc/edgepose/edgepose.env; set EDGEPOSE_MODEL=/opt/edgepose/models/$name there to use the new model"
else
  sed "s#^EDGEPOSE_MODEL=.*#EDGEPOSE_MODEL=/opt/edgepose/models/$name#" "$repo/firmware/edgepose.env" > /etc/edgepose/edgepose.env
  chgrp edgepose /etc/edgepose/edgepose.env && chmod 0640 /etc/edgepose/edgepose.env
fi
install -m 0644 "$repo/firmware/edgepose.service" /etc/systemd/system/edgepose.service
systemctl daemon-reload
systemctl enable --now edgepose.service
/opt/edgepose/venv/bin/edgepose info --model "/opt/edgepose/models/$name"
