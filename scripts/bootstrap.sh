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
# systemd: systemd-analyze, which the tests use to verify the units in systemd/;
# chromium: the real browser the console's tests drive (Playwright with executable_path,
# so nothing is downloaded from Playwright's CDN); fonts-noto-cjk: the Chinese notice and
# pages render as glyphs, not boxes, in the browser and on the kiosk; poppler-utils: pdftoppm
# and pdftotext, with which the tests read the compliance report's PDF as a person would.
apt_install libgl1 libglib2.0-0 mosquitto systemd chromium fonts-noto-cjk poppler-utils ${APPLIANCE_APT_EXTRA:-}

if [ ! -x "$VENV/bin/python" ]; then
  VENV_OPTIONS=()
  # Raspberry Pi OS ships picamera2 (and libcamera) as Debian packages only: let the venv see them
  if "$PYTHON" -c "import picamera2" >/dev/null 2>&1; then
    VENV_OPTIONS+=(--system-site-packages)
  fi
  echo "bootstrap: creating $VENV ${VENV_OPTIONS[*]:-}"
  "$PYTHON" -m venv "${VENV_OPTIONS[@]}" "$VENV"
fi
STAMP="$VENV/.appliance-installed"
WANT=$(cat setup.cfg constraints.txt | sha256sum | cut -c1-16)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "bootstrap: installing Python packages"
  "$VENV/bin/python" -m pip install -q --upgrade "pip<27" 2>&1 | grep -v "^WARNING: Location" || true
  "$VENV/bin/python" -m pip install -q -c constraints.txt -e ".[dev,dlib,plots,sm]" 2>&1 | grep -v "^WARNING: Location" || true
  # face_recognition (the benchmark peer) pins the source 'dlib', which compiles for
  # minutes; dlib-bin provides the same module, so install the peer without its deps.
  "$VENV/bin/python" -m pip install -q -c constraints.txt --no-deps face-recognition 2>&1 | grep -v "^WARNING: Location" || true
  "$VENV/bin/python" -c "import cv2, mediapipe, onnxruntime, dlib, appliance" >/dev/null
  echo "$WANT" > "$STAMP"
fi
# the package's bytecode, as installing a wheel writes it: the editable install writes none, and
# where PYTHONDONTWRITEBYTECODE is set (CI) every 'appliance' process compiled its modules again,
# 0.15-0.25 s each; compileall only redoes files changed since
"$VENV/bin/python" -m compileall -q -j 0 appliance

# Liveness (MiniFASNet, Apache-2.0): the PyTorch state dicts on the model search path are
# converted once to ONNX in a throw-away venv holding exactly the manifest's converter_requires
# (CPU torch, onnx); the appliance itself never imports torch. A converted file's bytes depend
# on the CPU, so it is verified numerically against the original model's recorded outputs
# ('appliance models verify'), never by its sha256; skipped when it verifies.
CONVERT_VENV="$ROOT/.cache/convert-venv"
# exact pins only ("name==version"; a local label such as +cpu is ignored, as pip does)
PINS_MET='
import sys
from importlib import metadata
for pin in sys.argv[1:]:
    name, wanted = pin.split("==")
    try:
        have = metadata.version(name)
    except metadata.PackageNotFoundError:
        sys.exit(1)
    if have.split("+")[0] != wanted and have != wanted:
        sys.exit(1)
'
# convert_pack PACK: made at set-up by its converter in the converter venv (the manifest's exact
# converter_requires, installed only when not already met), unless it already verifies
convert_pack() {
  local pack=$1 requires
  if "$VENV/bin/appliance" models verify --pack "$pack" >/dev/null 2>&1; then
    return 0
  fi
  mapfile -t requires < <("$VENV/bin/python" -c '
import sys, tomllib
with open(sys.argv[1], "rb") as manifest:
    print("\n".join(tomllib.load(manifest)["file"]["source"]["converter_requires"]))
' "models/$pack/manifest.toml")
  if [ ! -x "$CONVERT_VENV/bin/python" ] || ! "$CONVERT_VENV/bin/python" -I -c "$PINS_MET" "${requires[@]}"; then
    echo "bootstrap: installing ${requires[*]} for the $pack conversion"
    [ -x "$CONVERT_VENV/bin/python" ] || "$PYTHON" -m venv "$CONVERT_VENV"
    "$CONVERT_VENV/bin/python" -m pip install -q "${requires[@]}" 2>&1 | grep -v "^WARNING: Location" || true
  fi
  "$VENV/bin/appliance" models convert --pack "$pack" --python "$CONVERT_VENV/bin/python"
}

convert_pack minifasnet-silentface  # inputs: the state dicts on the shared search path

# the packs that come from a registry or the search path; the converted ones are checked below
"$VENV/bin/appliance" models install --sources-only

# int8 embedder (w600k-mbf-int8, non-commercial like w600k-mbf): quantised from the installed
# w600k-mbf file (hence after 'models install') with ONNX Runtime's static QDQ tools, calibrated
# on aligned faces of celeba-dev split a only; ~20 s on 2 cores.
convert_pack w600k-mbf-int8

# Second learned liveness opinion (Human's antispoof and liveness TF.js models; NOT for
# commercial use, docs/models.md): their inputs come from the npm tarball, fetched once by
# 'models install --sources-only' above (pinned URL + sha512 integrity, no npm binary), and our
# own TF.js-graph converter makes the ONNX files (onnx, numpy).
convert_pack human-antispoof
convert_pack human-liveness

# every pack, converted ones included, installed and verified
"$VENV/bin/appliance" models install
