#!/usr/bin/env bash
# Install everything, then run the whole test suite (unit and integration).
#   bash scripts/test.sh [PYTEST ARGS...]
# Integration tests run the real job on a 2,000-item Beauty slice with local Spark, Delta,
# Ray and MLflow; the tests took 16 minutes on a quiet 2-core machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The tests also load the Airflow DAG, so they need the airflow extra. On top of the other
# packages it took 36 s with an empty pip cache on a busy 2-core machine, and adds about 160 MB.
EXTRAS="${EXTRAS:-dev,airflow}" bash "$ROOT/scripts/install.sh"
cd "$ROOT"
export SPARK_LOCAL_IP=127.0.0.1 RAY_USAGE_STATS_ENABLED=0 RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
