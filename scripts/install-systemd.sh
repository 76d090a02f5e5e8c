#!/usr/bin/env bash
# Install the appliance's systemd units (see docs/operations.md, "Install on a Pi").
#
#   sudo scripts/install-systemd.sh --role edge            # a door device (Pi / Jetson)
#   sudo scripts/install-systemd.sh --role matcher --role broker
#
# Options:
#   --prefix DIR   where the appliance is installed (default /opt/appliance): a checkout set
#                  up by scripts/bootstrap.sh, or a folder holding a venv with the wheel
#   --venv DIR     the virtual environment with the 'appliance' command (default PREFIX/.venv)
#   --root DIR     install below DIR instead of / (packaging, tests); implies --no-activate
#   --no-activate  only write files: no users, no daemon-reload, no enable
#   --role R       edge | matcher | broker | console | kiosk: enable and start that service
#                  (repeatable); the maintenance timer is enabled with the matcher
#   --replica NAME enable and start a further matcher replica on this host,
#                  appliance-matcher@NAME (repeatable; provision it first:
#                  appliance provision matcher NAME)
set -euo pipefail

# Shared with scripts/build-deb.sh, which sources this file for these definitions only
# (the Debian package ships the same units and the same wrapper, for /opt/appliance/venv).
# The units in systemd/ name /opt/appliance/.venv/bin/appliance and /opt/appliance/...:
# the venv is rewritten first, then the prefix.
render_unit() {  # render_unit UNIT_FILE VENV PREFIX: the unit's text on stdout
  sed -e "s#/opt/appliance/.venv#$2#g" -e "s#/opt/appliance#$3#g" "$1"
}
# appliance-matcher@NAME.service, a further matcher replica on the same host (one per core:
# docs/deployment.md, "Matchers and sizing"), is the matcher's own unit with the replica's
# name from the instance: made from it, so the two cannot drift apart
replica_unit() {  # replica_unit < the rendered appliance-matcher.service: the template on stdout
  sed -e 's#^Description=.*#& replica %i#' -e 's#^ExecStart=.* matcher .*#& --name %i#'
}
# the administrator's 'appliance': the units' configuration and data folder, then the
# installed command, so a command typed on the host acts on the same site as the services
wrapper_text() {  # wrapper_text VENV WRITER: the wrapper script on stdout
  cat <<WRAPPER
#!/bin/sh
# Written by $2: the units' environment, then the installed command.
export APPLIANCE_CONFIG="\${APPLIANCE_CONFIG:-/etc/appliance/appliance.toml}"
export APPLIANCE_DATA_DIR="\${APPLIANCE_DATA_DIR:-/var/lib/appliance}"
exec "$1/bin/appliance" "\$@"
WRAPPER
}
if [ "${BASH_SOURCE[0]}" != "$0" ]; then
  return 0  # sourced (scripts/build-deb.sh): the definitions only
fi

SRC="$(cd "$(dirname "$0")/.." && pwd)"
PREFIX=/opt/appliance
VENV=
ROOT=/
ACTIVATE=1
ROLES=()
REPLICAS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX="$2"; shift 2 ;;
    --venv) VENV="$2"; shift 2 ;;
    --root) ROOT="$2"; ACTIVATE=0; shift 2 ;;
    --no-activate) ACTIVATE=0; shift ;;
    --role) ROLES+=("$2"); shift 2 ;;
    --replica) REPLICAS+=("$2"); shift 2 ;;
    *) echo "install-systemd: unknown option $1" >&2; exit 2 ;;
  esac
done
VENV="${VENV:-$PREFIX/.venv}"
UNIT_DIR="${ROOT%/}/etc/systemd/system"
CONF_DIR="${ROOT%/}/etc/appliance"

if [ "$ACTIVATE" = 1 ] && [ "$(id -u)" -ne 0 ]; then
  echo "install-systemd: run as root (or use --root DIR --no-activate)" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/appliance" ]; then
  echo "install-systemd: $VENV/bin/appliance missing: run scripts/bootstrap.sh in $PREFIX, or pip install the wheel into $VENV" >&2
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
  # the kiosk browser's own user: no access to the edge's keys and stores (docs/kiosk.md)
  id appliance-kiosk >/dev/null 2>&1 || useradd --system --user-group --no-create-home \
    --home-dir /var/lib/appliance-kiosk --shell /usr/sbin/nologin appliance-kiosk
fi

install -d -m 0755 "$UNIT_DIR"
install -d -m 0755 "$CONF_DIR"
for unit in "$SRC"/systemd/appliance-*.service "$SRC"/systemd/appliance-*.timer; do
  render_unit "$unit" "$VENV" "$PREFIX" > "$UNIT_DIR/$(basename "$unit").tmp"
  chmod 0644 "$UNIT_DIR/$(basename "$unit").tmp"
  mv "$UNIT_DIR/$(basename "$unit").tmp" "$UNIT_DIR/$(basename "$unit")"
done
replica_unit < "$UNIT_DIR/appliance-matcher.service" > "$UNIT_DIR/appliance-matcher@.service.tmp"
chmod 0644 "$UNIT_DIR/appliance-matcher@.service.tmp"
mv "$UNIT_DIR/appliance-matcher@.service.tmp" "$UNIT_DIR/appliance-matcher@.service"
# the configuration is the integrator's: the shipped default (from the installed package)
# is written once, never overwritten; set [device] name and source before starting the edge
[ -f "$CONF_DIR/appliance.toml" ] || "$VENV/bin/appliance" config init --out "$CONF_DIR/appliance.toml" >/dev/null
chmod 0644 "$CONF_DIR/appliance.toml"

# the administrator's 'appliance' ('sudo -u appliance appliance provision ...')
BIN_DIR="${ROOT%/}/usr/local/bin"
install -d -m 0755 "$BIN_DIR"
wrapper_text "$VENV" scripts/install-systemd.sh > "$BIN_DIR/appliance.tmp"
chmod 0755 "$BIN_DIR/appliance.tmp"
mv "$BIN_DIR/appliance.tmp" "$BIN_DIR/appliance"

if [ "$ACTIVATE" = 1 ]; then
  # the services' data folder exists before the first start, owned by the service user, so
  # provisioning can run as that user ('sudo -u appliance appliance provision ...')
  install -d -m 0700 -o appliance -g appliance /var/lib/appliance
fi

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
      console) systemctl enable --now appliance-console.service ;;
      kiosk) systemctl enable --now appliance-kiosk.service ;;
      *) echo "install-systemd: unknown role $role" >&2; exit 2 ;;
    esac
  done
  for replica in "${REPLICAS[@]}"; do
    systemctl enable --now "appliance-matcher@$replica.service"
  done
fi
echo "install-systemd: units in $UNIT_DIR (prefix $PREFIX)"
