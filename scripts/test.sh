#!/usr/bin/env bash
# Install what is needed (idempotent) and run the whole test suite.
#   APPLIANCE_SHARED_DATA  datasets and weights (default ../shared beside the checkout)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export APPLIANCE_SHARED_DATA="${APPLIANCE_SHARED_DATA:-$(cd .. && pwd)/shared}"
# lint first: a finding fails the run like a failing test (rules in pyproject.toml)
.venv/bin/ruff check --quiet .
# a whole-suite run leaves its record for 'appliance compliance report' (docs/compliance/README.md)
record=()
[ "$#" -eq 0 ] && record=(--junitxml=reports/tests/junit.xml)
exec .venv/bin/python -m pytest -q -p no:cacheprovider ${record[@]+"${record[@]}"} "$@"
