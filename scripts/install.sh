#!/usr/bin/env bash
# Create ./.venv, install sid-pipeline with its pinned dependencies, and resolve the Delta
# Lake jars into ./.delta-jars. Idempotent: a second run only checks what is there.
#
#   bash scripts/install.sh            # runtime and test dependencies
#   EXTRAS=dev,airflow bash scripts/install.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
EXTRAS="${EXTRAS:-dev}"
PYTHON="${PYTHON:-python3}"

# Python environment.
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip setuptools wheel
.venv/bin/python -m pip install --quiet -e ".[${EXTRAS}]"

# Delta jars: the delta-spark wheel ships none, so Maven resolves io.delta:delta-spark and
# its dependencies. Jars that pyspark already bundles (Hadoop, Jackson, Parquet, Scala...)
# are dropped so that Spark's own versions stay on the classpath.
if [ ! -f .delta-jars/.complete ]; then
    rm -rf .delta-jars
    mvn -q -f .ci/delta/pom.xml dependency:copy-dependencies \
        -DoutputDirectory="$ROOT/.delta-jars" -DincludeScope=runtime
    .venv/bin/python scripts/prune_delta_jars.py .delta-jars
    touch .delta-jars/.complete
fi
echo "install.sh: environment ready in $ROOT/.venv, Delta jars in $ROOT/.delta-jars"
