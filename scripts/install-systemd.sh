#!/usr/bin/env bash
# Install the appliance's systemd units (see docs/operations.md, "Install on a Pi").
#
#   sudo scripts/install-systemd.sh --role edge            # a door device (Pi / Jetson)
#   sudo scripts/install-systemd.sh --role matcher --role broker
#
# Options:
#   --prefix DIR   where the checkout with its .venv lives (default /opt/appliance); the
#                  units' /opt/appliance paths are rewritten to it
#   --root DIR     install below DIR instead of / (packaging, tests); implies --no-activate
#   --no-activate  only write files: no users, no daemon-reload, no enable
#   --role R       edge | matcher | broker: enable and start that service (repeatable);
#                  the maintenance timer is enabled with the matcher
set -euo pipefail
SRC="$(cd "$(dirname "$0")/.." && pwd)"
PREFIX=/opt/appliance
ROOT=/
ACTIVATE=1
ROLES=()
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX="$2"; shift 2 ;;
    --root) ROOT="$2"; ACTIVATE=0; shift 2 ;;
    --no-activate) ACTIVATE=0; shift ;;
    --role) ROLES+=("$2"); shift 2 ;;
    *) echo "install-systemd: unknown option $1" >&2; exit 2 ;;
  esac
done
UNIT_DIR="${ROOT%/}/etc/systemd/system"
CONF_DIR="${ROOT%/}/etc/appliance"

if [ "$ACTIVATE" = 1 ] && [ "$(id -u)" -ne 0 ]; then
  echo "install-systemd: run as root (or use --root DIR --no-activate)" >&2
  exit 1
fi
if [ ! -x "$PREFIX/.venv/bin/appliance" ]; then
  echo "install-systemd: $PREFIX/.venv/bin/appliance missing: run scripts/bootstrap.sh in $PREFIX first" >&2
  exit 1
fi

if [ "$ACTIVATE" = 1 ]; then
  # dedicated system users without a login shell or home; the edge needs the camera and
  # GPIO groups (Raspberry Pi OS has both; create gpio where the OS does not)
  getent group gpio >/dev/null || groupadd --system gpio
  getent group video >/dev/null || groupadd --system video
  id appliance >/dev/null 2>&1 || useradd --system --user-group --no-create-home \
    --home-dir /var/lib/appliance --shell /usr/sbin/nologin appliance
  id appliance-broker >/dev/null 2>&1 || useradd --system --user-group --no-create-home \
    --home-dir /var/lib/appliance-broker --shell /usr/sbin/nologin appliance-broker
fi

install -d -m 0755 "$UNIT_DIR"
install -d -m 0755 "$CONF_DIR"
for unit in "$SRC"/systemd/appliance-*.service "$SRC"/systemd/appliance-*.timer; do
  sed "s#/opt/appliance#${PREFIX}#g" "$unit" > "$UNIT_DIR/$(basename "$unit").tmp"
  chmod 0644 "$UNIT_DIR/$(basename "$unit").tmp"
  mv "$UNIT_DIR/$(basename "$unit").tmp" "$UNIT_DIR/$(basename "$unit")"
done
# the configuration is the integrator's: installed once, never overwritten
[ -f "$CONF_DIR/appliance.toml" ] || install -m 0644 "$SRC/config/appliance.toml" "$CONF_DIR/appliance.toml"

if command -v systemd-analyze >/dev/null; then
  systemd-analyze verify "$UNIT_DIR"/appliance-*.service "$UNIT_DIR"/appliance-*.timer
fi

if [ "$ACTIVATE" = 1 ]; then
  systemctl daemon-reload
  for role in "${ROLES[@]}"; do
    case "$role" in
      edge) systemctl enable --now appliance-edge.service ;;
      matcher) systemctl enable --now appliance-matcher.service appliance-maintenance.timer ;;
      broker) systemctl enable --now appliance-broker.service ;;
      *) echo "install-systemd: unknown role $role" >&2; exit 2 ;;
    esac
  done
fi
echo "install-systemd: units in $UNIT_DIR (prefix $PREFIX)"
