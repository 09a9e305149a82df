"""Airflow DAGs that run the Semantic ID build one stage per `spark-submit`.

Two DAGs come from `build_sid_dag()`:

- `sid_incremental_daily` (`@daily`): embed -> resolve -> publish -> export with
  `--mode incremental`, which adds new items without moving a published SID;
- `sid_full_weekly` (`@weekly`): embed -> train -> resolve -> publish -> export with
  `--mode full`, which trains new codebooks and publishes a new version.

Every task of one DAG run passes the same `--run-id`, made of the DAG id and the logical
date. So each stage reads what the previous stage of that run wrote, and a cleared or
retried task replaces its own rows instead of adding new ones. The incremental DAG needs an active
version, so the first run of a new warehouse must be `sid_full_weekly`.

Setup: point Airflow's `dags_folder` at this folder (or copy this file and set the
`sid_repo_root` Variable), create the pool with
`airflow pools set sid_pipeline 1 "Semantic ID writes"`, and put `spark-submit` on the
worker's PATH (`.venv/bin` locally). Every setting below is an optional Airflow Variable;
Airflow also reads a Variable from the environment variable `AIRFLOW_VAR_<NAME>`:

| Variable | sets | default |
| --- | --- | --- |
| `sid_spark_conn_id` | connection of the Spark master, read when the file is parsed | `spark_default` |
| `sid_repo_root` | checkout with `jobs/`, `conf/` and `.delta-jars/` | the folder above this file |
| `sid_python` | Python of the Spark driver and executors | `<root>/.venv/bin/python` |
| `sid_delta_jars` | comma-separated jars for `--jars` | every jar in `<root>/.delta-jars` |
| `sid_spark_packages` | Maven coordinates for `--packages` (a cluster without the jars) | none |
| `sid_driver_memory` | `spark.driver.memory` | `4g` |
| `sid_config_path` | config when the `config_path` param is empty | `conf/beauty.yaml` |
| `sid_catalog_path` | catalog when the `catalog_path` param is empty | `../shared/data/amazon-beauty-2014` |
| `sid_export_dir` | parent folder of each run's export | `out/sids` |

Relative paths resolve against `sid_repo_root`. Paths inside the config file resolve
against the working directory of `spark-submit`, which is the Airflow worker's, so a
scheduled config should use absolute paths for `spark.warehouse_dir`,
`mlflow.tracking_uri` and `run.work_dir`, or the worker should start in the repository.
"""

from __future__ import annotations

import glob
import os
import pathlib
import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, Literal

import pendulum
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, Param, RetryDecision, RetryPolicy, Variable

__all__ = ["POOL", "RUN_ID_TEMPLATE", "build_sid_dag", "sid_full_weekly", "sid_incremental_daily"]

# One slot shared by both DAGs, so the full and the incremental build never run two stages
# at once. NOTE: the pool serializes tasks, not DAG runs, so a stage of one DAG can still run
# between two stages of the other.
POOL = "sid_pipeline"

# The logical date identifies a scheduled run and stays the same when a task is cleared or
# retried. A run triggered with `airflow dags trigger` has no logical date, so its trigger
# time (run_after) is used instead.
RUN_DATE_EXPRESSION = "(dag_run.logical_date or dag_run.run_after)"
RUN_ID_TEMPLATE = "{{ dag.dag_id }}__{{ " + RUN_DATE_EXPRESSION + " | ts_nodash }}"

DEFAULT_REPO_ROOT = str(pathlib.Path(__file__).resolve().parents[1])
DEFAULT_CONFIG_PATH = "conf/beauty.yaml"
# The Beauty catalog location that scripts/run_beauty.sh uses by default.
DEFAULT_CATALOG_PATH = "../shared/data/amazon-beauty-2014"
DEFAULT_EXPORT_DIR = "out/sids"
# scripts/spark-submit.sh gives the local driver the same memory.
DEFAULT_DRIVER_MEMORY = "4g"

# Exit codes that a retry cannot fix: 2 is invalid config or input, 3 a version that failed
# the quality gate. Exit code 4 (another job has locked the local warehouse, or commits kept
# conflicting) and 1 (any other failure) are retried with back-off.
NO_RETRY_EXIT_CODES = frozenset({2, 3})
# SparkSubmitHook (provider 6.3.4) reports a failed spark-submit as
# "Cannot execute: <command>. Error code is: <code>."
_EXIT_CODE_PATTERN = re.compile(r"Error code is: (\d+)")

DEFAULT_ARGS = {
    "owner": "sid-pipeline",
    "retries": 2,
    "retry_delay": timedelta(minutes=5),
    # A multiplier in Airflow 3.3: retry n waits retry_delay * 2**(n-1) plus a spread of up to as
    # much again, so 5 to 10 min, then 10 to 20 min, at most max_retry_delay.
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(hours=1),
    "pool": POOL,
}

Stage = Literal["embed", "train", "resolve", "publish"]
Mode = Literal["full", "incremental"]


class SparkExitCodeRetryPolicy(RetryPolicy):
    """Fail a task at once when spark-submit exits with a code that a retry cannot fix."""

    def __init__(self, no_retry_exit_codes: frozenset[int] = NO_RETRY_EXIT_CODES) -> None:
        self.no_retry_exit_codes = no_retry_exit_codes

    def evaluate(self, exception: BaseException, try_number: int, max_tries: int,
                 context: Mapping[str, Any] | None = None) -> RetryDecision:
        match = _EXIT_CODE_PATTERN.search(str(exception))
        if match and int(match.group(1)) in self.no_retry_exit_codes:
            return RetryDecision.fail(
                reason=f"spark-submit exited with code {match.group(1)}, which a retry cannot fix "
                       "(3 means the new version failed the quality gate). Fix the input or config, "
                       "then clear the task")
        return RetryDecision.default()

    def serialize(self) -> dict[str, Any]:
        return {"no_retry_exit_codes": sorted(self.no_retry_exit_codes)}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> SparkExitCodeRetryPolicy:
        return cls(frozenset(data["no_retry_exit_codes"]))


# Template macros. They run when a task renders its arguments on the worker, so Variables
# and the jar folder are read there, not when the DAG file is parsed.

def repo_root() -> str:
    return Variable.get("sid_repo_root", default=DEFAULT_REPO_ROOT)


def _under_repo_root(path: str) -> str:
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(repo_root(), path))


def python_executable() -> str:
    return Variable.get("sid_python", default=os.path.join(repo_root(), ".venv", "bin", "python"))


def delta_jars() -> str:
    """Return the ``--jars`` value: the Variable, else every jar in ``<root>/.delta-jars``."""
    configured = Variable.get("sid_delta_jars", default=None)
    if configured is not None:
        return configured
    return ",".join(sorted(glob.glob(os.path.join(repo_root(), ".delta-jars", "*.jar"))))


def spark_packages() -> str:
    return Variable.get("sid_spark_packages", default="")


def driver_memory() -> str:
    return Variable.get("sid_driver_memory", default=DEFAULT_DRIVER_MEMORY)


def config_path(params: Mapping[str, Any]) -> str:
    return _under_repo_root(params["config_path"] or Variable.get("sid_config_path", default=DEFAULT_CONFIG_PATH))


def catalog_path(params: Mapping[str, Any], run_date: str) -> str:
    """Return the catalog path with ``{date}`` replaced by the catalog date (YYYY-MM-DD)."""
    path = params["catalog_path"] or Variable.get("sid_catalog_path", default=DEFAULT_CATALOG_PATH)
    return _under_repo_root(path.replace("{date}", params["catalog_date"] or run_date))


def export_dir() -> str:
    return _under_repo_root(Variable.get("sid_export_dir", default=DEFAULT_EXPORT_DIR))


MACROS = {
    "sid_repo_root": repo_root,
    "sid_python": python_executable,
    "sid_delta_jars": delta_jars,
    "sid_spark_packages": spark_packages,
    "sid_driver_memory": driver_memory,
    "sid_config_path": config_path,
    "sid_catalog_path": catalog_path,
    "sid_export_dir": export_dir,
}

PARAMS = {
    "config_path": Param(
        "", type="string",
        description="YAML config of the build. Empty uses the sid_config_path Variable, else conf/beauty.yaml. "
                    "A relative path resolves against the repository root."),
    "catalog_path": Param(
        "", type="string",
        description="Catalog folder, file or Delta table path, where '{date}' is replaced by the catalog date. "
                    "Empty uses the sid_catalog_path Variable, else ../shared/data/amazon-beauty-2014."),
    "catalog_date": Param(
        "", type="string", pattern=r"^(\d{4}-\d{2}-\d{2})?$",
        description="Date (YYYY-MM-DD) put in place of '{date}' in the catalog path. Empty uses the run's "
                    "logical date."),
}


def _spark_task(*, task_id: str, application: str, application_args: list[str], conn_id: str) -> SparkSubmitOperator:
    """Create one spark-submit task with the repository's Python, Delta jars and log settings."""
    return SparkSubmitOperator(
        task_id=task_id,
        conn_id=conn_id,
        application="{{ sid_repo_root() }}/jobs/" + application,
        application_args=application_args,
        jars="{{ sid_delta_jars() }}",
        packages="{{ sid_spark_packages() }}",
        conf={
            "spark.pyspark.python": "{{ sid_python() }}",
            "spark.pyspark.driver.python": "{{ sid_python() }}",
            # Read by the launcher before the driver JVM starts, like --driver-memory.
            "spark.driver.memory": "{{ sid_driver_memory() }}",
            "spark.driver.extraJavaOptions": (
                "-Dlog4j2.configurationFile=file:{{ sid_repo_root() }}/conf/log4j2.properties "
                "-Dderby.system.home={{ sid_repo_root() }}/warehouse"),
        },
        name="sid-" + task_id,
    )


def build_sid_dag(*, dag_id: str, mode: Mode, stages: Sequence[Stage], schedule: str,
                  conn_id: str, description: str) -> DAG:
    """Build a DAG that runs ``stages`` of jobs/build_sids.py in order, then jobs/export_sids.py."""
    with DAG(
        dag_id=dag_id,
        description=description,
        schedule=schedule,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS | {"retry_policy": SparkExitCodeRetryPolicy()},
        params=PARAMS,
        user_defined_macros=MACROS,
        tags=["sid-pipeline"],
        doc_md=__doc__,
    ) as dag:
        build_args = [
            "--config", "{{ sid_config_path(params) }}",
            "--catalog-path", "{{ sid_catalog_path(params, " + RUN_DATE_EXPRESSION + " | ds) }}",
            "--mode", mode,
            "--run-id", RUN_ID_TEMPLATE,
        ]
        previous = None
        for stage in stages:
            task = _spark_task(task_id=stage, application="build_sids.py",
                               application_args=[*build_args, "--stage", stage], conn_id=conn_id)
            if previous is not None:
                previous >> task
            previous = task

        export = _spark_task(
            task_id="export", application="export_sids.py", conn_id=conn_id,
            application_args=["--config", "{{ sid_config_path(params) }}",
                              "--output", "{{ sid_export_dir() }}/" + RUN_ID_TEMPLATE],
        )
        previous >> export
    return dag


# The only Variable read at parse time: SparkSubmitOperator does not template conn_id.
SPARK_CONN_ID = Variable.get("sid_spark_conn_id", default="spark_default")

sid_incremental_daily = build_sid_dag(
    dag_id="sid_incremental_daily", mode="incremental", stages=["embed", "resolve", "publish"],
    schedule="@daily", conn_id=SPARK_CONN_ID,
    description="Add new catalog items to the active Semantic ID version without moving published SIDs",
)
sid_full_weekly = build_sid_dag(
    dag_id="sid_full_weekly", mode="full", stages=["embed", "train", "resolve", "publish"],
    schedule="@weekly", conn_id=SPARK_CONN_ID,
    description="Rebuild every Semantic ID with new codebooks and publish a new version",
)
