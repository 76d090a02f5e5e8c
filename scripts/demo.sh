#!/usr/bin/env bash
# Install what is needed (idempotent) and run the main job end to end on the shared faces:
# enroll some identities, then identify camera frames replayed from a folder.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export APPLIANCE_SHARED_DATA="${APPLIANCE_SHARED_DATA:-$(cd .. && pwd)/shared}"
exec .venv/bin/appliance demo "$@"
