#!/usr/bin/env bash
# Install what is needed (idempotent) and run the whole test suite.
#   APPLIANCE_SHARED_DATA  datasets and weights (default ../shared beside the checkout)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export APPLIANCE_SHARED_DATA="${APPLIANCE_SHARED_DATA:-$(cd .. && pwd)/shared}"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
