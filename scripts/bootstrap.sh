#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian machine: system packages, the virtual environment,
# Python packages (pinned by constraints.txt) and the model packs (sha256-verified).
# Re-running only does what is missing. Sourced by scripts/test.sh and scripts/demo.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="${APPLIANCE_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

apt_install() {
  local missing=()
  for package in "$@"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
      echo "bootstrap: need root to install: ${missing[*]}" >&2
      exit 1
    fi
    echo "bootstrap: apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# libgl1/libglib2.0-0: OpenCV and MediaPipe native libraries; mosquitto: the MQTT broker
# that tests and the demo start themselves (the Debian service stays disabled here);
# systemd: systemd-analyze, which the tests use to verify the units in systemd/.
apt_install libgl1 libglib2.0-0 mosquitto systemd ${APPLIANCE_APT_EXTRA:-}

if [ ! -x "$VENV/bin/python" ]; then
  echo "bootstrap: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
STAMP="$VENV/.appliance-installed"
WANT=$(cat setup.cfg constraints.txt | sha256sum | cut -c1-16)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "bootstrap: installing Python packages"
  "$VENV/bin/python" -m pip install -q --upgrade "pip<27" 2>&1 | grep -v "^WARNING: Location" || true
  "$VENV/bin/python" -m pip install -q -c constraints.txt -e ".[dev,dlib]" 2>&1 | grep -v "^WARNING: Location" || true
  # face_recognition (the benchmark peer) pins the source 'dlib', which compiles for
  # minutes; dlib-bin provides the same module, so install the peer without its deps.
  "$VENV/bin/python" -m pip install -q -c constraints.txt --no-deps face-recognition 2>&1 | grep -v "^WARNING: Location" || true
  "$VENV/bin/python" -c "import cv2, mediapipe, onnxruntime, dlib, appliance" >/dev/null
  echo "$WANT" > "$STAMP"
fi

# Liveness (MiniFASNet, Apache-2.0): the PyTorch state dicts on the model search path are
# converted once to ONNX in a throw-away venv with the CPU torch wheel; the appliance itself
# never imports torch. Skipped when the converted file is present with the manifest's sha256.
if ! "$VENV/bin/python" scripts/convert_minifasnet.py --check >/dev/null; then
  CONVERT_VENV="$ROOT/.cache/convert-venv"
  if [ ! -x "$CONVERT_VENV/bin/python" ] || ! "$CONVERT_VENV/bin/python" -c "import torch, onnx" 2>/dev/null; then
    echo "bootstrap: installing torch for the MiniFASNet conversion"
    "$PYTHON" -m venv "$CONVERT_VENV"
    "$CONVERT_VENV/bin/python" -m pip install -q "torch==2.13.0" onnx 2>&1 | grep -v "^WARNING: Location" || true
  fi
  "$CONVERT_VENV/bin/python" scripts/convert_minifasnet.py
fi

"$VENV/bin/appliance" models install
