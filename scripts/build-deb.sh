#!/usr/bin/env bash
# Build the face-appliance Debian package with plain dpkg-deb (docs/operations.md, "Debian
# package"); prints the path of the .deb.
#
#   scripts/build-deb.sh [--out DIR]     # default DIR: dist/ in this checkout
#
# What the package holds:
#   /opt/appliance/wheels/        the project wheel, built from a clean copy of the sources, and
#                                 a wheelhouse of every dependency pinned by constraints.txt, for
#                                 THIS machine's Python ABI and architecture; postinst installs
#                                 them offline into the venv /opt/appliance/venv
#   /lib/systemd/system/          the units of systemd/, rewritten for /opt/appliance/venv,
#                                 and appliance-matcher@.service made from the matcher's unit
#   /etc/appliance/appliance.toml the shipped default configuration (a conffile)
#   /usr/bin/appliance            the administrator's wrapper with the units' environment
#   /opt/appliance/docs/          the documentation the units' Documentation= names
#   /usr/share/doc/face-appliance/copyright
# Model files are not in it ('appliance models install' on the host), nor any key.
#
# Debian packages or the venv. Outside the venv the product needs what Debian has: the
# interpreter (python3, the minor version the wheelhouse was built for), python3-venv,
# libgl1 and libglib2.0-0 (OpenCV's and MediaPipe's native libraries load them), adduser
# (the maintainer scripts) and, recommended, mosquitto (only the broker host runs it), chromium
# and fonts-noto-cjk (only a door with a kiosk screen shows the page, in Chinese too; a headless
# matcher host needs neither) and, suggested, cage (the kiosk's compositor on a bare console). The
# Python libraries stay in the venv: in Debian 12 (apt-cache policy, checked on bookworm)
# python3-numpy is 1.24.2, python3-opencv 4.6.0 (and not the contrib build MediaPipe needs),
# python3-paho-mqtt 1.6.1 (no 2.x API), python3-cryptography 38.0.4, python3-tomlkit 0.11.7,
# python3-tqdm 4.64.1, and there is no onnxruntime, mediapipe or sqlcipher3 module: not one
# meets even setup.cfg's lower bounds, let alone the pins. Mixing the few that might one day
# do so with the rest would also mean two resolvers and an untested combination; the venv
# gets exactly the pinned set the test suite runs with.
#
# Environment: PYTHON, the interpreter that builds (default this checkout's .venv, else
# python3): its ABI must be that of Debian's /usr/bin/python3, which the package depends on.
# DEBFULLNAME and DEBEMAIL set the Maintainer field.
set -euo pipefail
umask 022
SRC="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$SRC/dist"
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    *) echo "build-deb: unknown option $1 (usage: build-deb.sh [--out DIR])" >&2; exit 2 ;;
  esac
done
# render_unit and wrapper_text: the same unit rewrite and wrapper as a host install
# shellcheck source=install-systemd.sh
source "$SRC/scripts/install-systemd.sh"

PACKAGE=face-appliance
PREFIX=/opt/appliance
VENV="$PREFIX/venv"
TARGET_PYTHON=/usr/bin/python3
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$SRC/.venv/bin/python" ]; then PYTHON="$SRC/.venv/bin/python"; else PYTHON=python3; fi
fi
for tool in dpkg dpkg-deb "$TARGET_PYTHON"; do
  command -v "$tool" >/dev/null || { echo "build-deb: $tool missing (build on the Debian release you ship to)" >&2; exit 1; }
done

# the wheelhouse is built for the builder's ABI; postinst makes the venv with Debian's python3
ABI_OF='import sys, sysconfig; print(sysconfig.get_config_var("SOABI"), "%d.%d" % sys.version_info[:2])'
read -r BUILD_ABI BUILD_PY < <("$PYTHON" -I -c "$ABI_OF")
read -r TARGET_ABI TARGET_PY < <("$TARGET_PYTHON" -I -c "$ABI_OF")
if [ "$BUILD_ABI" != "$TARGET_ABI" ]; then
  echo "build-deb: $PYTHON is $BUILD_ABI but $TARGET_PYTHON is $TARGET_ABI: set PYTHON to a $TARGET_PY interpreter" >&2
  exit 1
fi
ARCH=$(dpkg --print-architecture)
NEXT_PY="${TARGET_PY%%.*}.$(( ${TARGET_PY#*.} + 1 ))"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/build-deb.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
PIP_LOG="$WORK/pip.log"
pip_quiet() {  # pip, without the "Location ... is ignored" noise of local index settings
  if ! "$PYTHON" -m pip "$@" >"$PIP_LOG" 2>&1; then
    cat "$PIP_LOG" >&2
    echo "build-deb: pip $1 failed" >&2
    exit 1
  fi
  grep -v "^WARNING: Location" "$PIP_LOG" >&2 || true
}

# 1. the project wheel, from a clean copy of the sources: a stale build/ (or a venv, caches,
#    model files) in the checkout must not leak in (the same list as tests/ops/test_install_wheel.py)
mkdir "$WORK/src"
tar -C "$SRC" --exclude=.git --exclude=.venv --exclude=.cache --exclude=var --exclude=build \
  --exclude=dist --exclude=reports --exclude='*.egg-info' --exclude=__pycache__ \
  --exclude='*.onnx' --exclude='*.task' --exclude='*.dat' --exclude='*.tflite' -cf - . \
  | tar -C "$WORK/src" -xf -
pip_quiet wheel --no-deps --quiet -w "$WORK/dist" "$WORK/src"
WHEEL=$(ls "$WORK"/dist/face_appliance-*.whl)

# 2. the staging tree; the wheelhouse: the project wheel and all its dependencies, pinned
STAGE="$WORK/stage"
install -d -m 0755 "$STAGE" "$STAGE/DEBIAN" "$STAGE$PREFIX/wheels" "$STAGE$PREFIX/docs" \
  "$STAGE/lib/systemd/system" "$STAGE/etc/appliance" "$STAGE/usr/bin" "$STAGE/usr/share/doc/$PACKAGE"
pip_quiet wheel --quiet -c "$WORK/src/constraints.txt" -w "$STAGE$PREFIX/wheels" "$WHEEL"
chmod 0644 "$STAGE$PREFIX"/wheels/*.whl

# the units and the wrapper exactly as scripts/install-systemd.sh writes them, for this venv
for unit in "$WORK"/src/systemd/appliance-*.service "$WORK"/src/systemd/appliance-*.timer; do
  render_unit "$unit" "$VENV" "$PREFIX" > "$STAGE/lib/systemd/system/$(basename "$unit")"
done
replica_unit < "$STAGE/lib/systemd/system/appliance-matcher.service" > "$STAGE/lib/systemd/system/appliance-matcher@.service"
wrapper_text "$VENV" "the $PACKAGE package" > "$STAGE/usr/bin/appliance"
chmod 0755 "$STAGE/usr/bin/appliance"
install -m 0644 "$WORK"/src/docs/*.md "$STAGE$PREFIX/docs/"

# the version, the shipped configuration, and each wheel's declared licence (copyright);
# the wheels of packages constraints.txt does not pin are named on stderr
VERSION=$("$PYTHON" -I - "$WORK/src" "$WHEEL" "$STAGE" "$STAGE$PREFIX/wheels" "$WORK/src/constraints.txt" \
  "$STAGE/usr/share/doc/$PACKAGE/licences" <<'PY'
import re, sys, zipfile
from email.parser import Parser
from pathlib import Path

src, wheel, stage, wheels, constraints, licences = sys.argv[1:]
sys.path.insert(0, src)
import appliance  # the sources' own version (setup.cfg: attr appliance.__version__)

# PEP 440 pre-releases sort before the release in Debian only with a tilde
print(re.sub(r"\.?(dev|a|b|rc)(\d+)", r"~\1\2", appliance.__version__))
with zipfile.ZipFile(wheel) as archive:  # the default the package ships, byte for byte
    Path(stage, "etc/appliance/appliance.toml").write_bytes(
        archive.read("appliance/defaults/config/appliance.toml"))

def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()

pinned = {canonical(line.split("==")[0]) for line in Path(constraints).read_text().splitlines()
          if "==" in line and not line.lstrip().startswith("#")}
lines, unpinned = [], []
for path in sorted(Path(wheels).glob("*.whl")):
    with zipfile.ZipFile(path) as archive:
        meta_name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(archive.read(meta_name).decode("utf-8", "replace"), headersonly=True)
    licence = meta.get("License-Expression") or ""
    if not licence and meta.get("License") and len(meta["License"]) <= 60 and "\n" not in meta["License"]:
        licence = meta["License"]
    if not licence:
        licence = ", ".join(c.split("::")[-1].strip() for c in meta.get_all("Classifier") or []
                            if c.startswith("License ::")) or "see its dist-info"
    lines.append(f" {path.name}: {licence}")
    if canonical(meta["Name"]) not in pinned and canonical(meta["Name"]) != "face-appliance":
        unpinned.append(f"{meta['Name']} {meta['Version']}")
Path(licences).write_text("\n".join(lines) + "\n")
if unpinned:
    print(f"build-deb: not pinned by constraints.txt (latest taken): {', '.join(unpinned)}", file=sys.stderr)
PY
)
cat "$WORK/src/scripts/deb/copyright" "$STAGE/usr/share/doc/$PACKAGE/licences" > "$STAGE/usr/share/doc/$PACKAGE/copyright"
rm "$STAGE/usr/share/doc/$PACKAGE/licences"
chmod 0644 "$STAGE/usr/share/doc/$PACKAGE/copyright" "$STAGE/etc/appliance/appliance.toml"

# 3. the control files
for script in preinst postinst prerm postrm; do
  install -m 0755 "$WORK/src/scripts/deb/$script" "$STAGE/DEBIAN/$script"
done
echo /etc/appliance/appliance.toml > "$STAGE/DEBIAN/conffiles"
INSTALLED_KB=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
cat > "$STAGE/DEBIAN/control" <<CONTROL
Package: $PACKAGE
Version: $VERSION
Architecture: $ARCH
Maintainer: ${DEBFULLNAME:-Face appliance maintainers} <${DEBEMAIL:-maintainers@face-appliance.invalid}>
Installed-Size: $INSTALLED_KB
Depends: python3 (>= $TARGET_PY), python3 (<< $NEXT_PY), python3-venv, libgl1, libglib2.0-0, adduser
Recommends: mosquitto, chromium, fonts-noto-cjk
Suggests: python3-picamera2, python3-gpiozero, cage
Section: misc
Priority: optional
Description: face-recognition access appliance: edge daemon and central matcher
 The edge daemon for a door (camera, liveness, templates, door relay), the
 central matcher, the web console, the door's kiosk screen (Chromium), and
 the units that run them under systemd (none is enabled
 on installation: provision the site first, see
 /opt/appliance/docs/operations.md).
 .
 The Python libraries are installed at configuration time, without network,
 into the venv /opt/appliance/venv from the wheels in /opt/appliance/wheels:
 the set pinned by the project's constraints.txt, built for this package's
 Python ABI and architecture only:
 CPython $TARGET_PY ($TARGET_ABI), $ARCH.
 Debian's own python3-numpy, python3-opencv, python3-paho-mqtt,
 python3-cryptography (and others) are older than the product needs, and
 onnxruntime, mediapipe and sqlcipher3 are not packaged.
 .
 Model files are not included ('appliance models install'); the default
 embedder pack is licensed for non-commercial research only (see
 /usr/share/doc/$PACKAGE/copyright). Purging the package deletes the
 configuration and the data folder with its biometric stores and keys.
CONTROL
chmod 0644 "$STAGE/DEBIAN/control" "$STAGE/DEBIAN/conffiles"

# 4. the archive: gzip level 1 (the wheels are compressed already; speed over a few MB)
mkdir -p "$OUT"
DEB="$(cd "$OUT" && pwd)/${PACKAGE}_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group -Zgzip -z1 --build "$STAGE" "$DEB" >/dev/null
echo "$DEB"
