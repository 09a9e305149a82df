#!/usr/bin/env bash
# Run spark-submit from ./.venv with Delta's jars on the classpath and every service on
# loopback. Arguments go to spark-submit unchanged, e.g.
#   bash scripts/spark-submit.sh jobs/build_sids.py --config conf/beauty.yaml
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ ! -x "$ROOT/.venv/bin/spark-submit" ] || [ ! -f "$ROOT/.delta-jars/.complete" ]; then
    echo "spark-submit.sh: run 'bash scripts/install.sh' first" >&2
    exit 2
fi
JARS="$(ls "$ROOT"/.delta-jars/*.jar | paste -sd, -)"
export PYSPARK_PYTHON="$ROOT/.venv/bin/python"
export PYSPARK_DRIVER_PYTHON="$ROOT/.venv/bin/python"
export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
export RAY_USAGE_STATS_ENABLED=0 RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "$ROOT/.venv/bin/spark-submit" \
    --jars "$JARS" \
    --driver-memory "${SPARK_DRIVER_MEMORY:-4g}" \
    --driver-java-options "-Dlog4j2.configurationFile=file:$ROOT/conf/log4j2.properties -Dderby.system.home=$ROOT/warehouse" \
    --conf spark.driver.host=127.0.0.1 \
    --conf spark.driver.bindAddress=127.0.0.1 \
    --conf spark.ui.showConsoleProgress=false \
    "$@"
