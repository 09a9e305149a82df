"""DAG-import tests of pipelines/airflow_dag.py with the real Airflow and Spark provider.

The tests need no metadata database and start no Spark job. ``DagBag`` loads the DAGs, and
templates are rendered with the context that a worker builds for a task instance. The
spark-submit on PATH is a stub script that records its arguments and exits with a chosen code.
"""

from __future__ import annotations

import atexit
import copy
import importlib.util
import os
import pathlib
import shutil
import tempfile
import uuid
from datetime import timedelta

# Airflow reads AIRFLOW_HOME when it is first imported, and a scratch home keeps the user's
# airflow.cfg and database out of the test. Variables and connections that the environment
# may set for a real deployment would change the defaults under test.
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="sid-airflow-home-")
atexit.register(shutil.rmtree, _AIRFLOW_HOME, ignore_errors=True)
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
for _name in list(os.environ):
    if _name.startswith(("AIRFLOW_VAR_SID_", "AIRFLOW_CONN_SPARK_")):
        del os.environ[_name]

import pytest  # noqa: E402

try:
    import airflow  # noqa: E402, F401
except ImportError as error:
    raise ImportError("apache-airflow is not installed. Install the airflow extra with "
                      "'EXTRAS=dev,airflow bash scripts/install.sh' (scripts/test.sh does this)") from error

import pendulum  # noqa: E402
from airflow.dag_processing.bundles.local import LocalDagBundle  # noqa: E402
from airflow.dag_processing.dagbag import DagBag  # noqa: E402
from airflow.sdk.api.datamodels._generated import DagRun, DagRunState, DagRunType, TIRunContext  # noqa: E402
from airflow.sdk.definitions.param import ParamValidationError  # noqa: E402
from airflow.sdk import RetryAction  # noqa: E402
from airflow.sdk.exceptions import AirflowException  # noqa: E402
from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance  # noqa: E402
from airflow.serialization.serialized_objects import DagSerialization  # noqa: E402
from airflow.utils.file import list_py_file_paths  # noqa: E402

pytestmark = pytest.mark.airflow

ROOT = pathlib.Path(__file__).resolve().parents[2]
DAG_FILE = ROOT / "pipelines" / "airflow_dag.py"
POOL = "sid_pipeline"
RUN_ID_TEMPLATE = "{{ dag.dag_id }}__{{ (dag_run.logical_date or dag_run.run_after) | ts_nodash }}"
LOGICAL_DATE = pendulum.datetime(2026, 12, 6, tz="UTC")
LOCAL_SPARK_CONNECTION = '{"conn_type": "spark", "host": "local[2]"}'

EXPECTED = {
    "sid_incremental_daily": {
        "mode": "incremental",
        "chain": ["embed", "resolve", "publish", "export"],
        "schedule": "@daily",
        "cron": "0 0 * * *",
    },
    "sid_full_weekly": {
        "mode": "full",
        "chain": ["embed", "train", "resolve", "publish", "export"],
        "schedule": "@weekly",
        "cron": "0 0 * * 0",
    },
}


@pytest.fixture(scope="module")
def dagbag():
    return DagBag(dag_folder=str(DAG_FILE))


def option(args: list[str], name: str) -> str:
    """Return the value that follows ``name`` in an argument list."""
    assert args.count(name) == 1, f"{name} given {args.count(name)} times in {args}"
    return args[args.index(name) + 1]


def render(dag, task_id: str, *, logical_date=LOGICAL_DATE, run_after=None, conf: dict | None = None):
    """Render a copy of one task with a worker's template context, and return the task and context.

    The context comes from the Task SDK's RuntimeTaskInstance, fed with the DAG run that the
    API server would send, so templates see what they see on a worker.
    """
    # A worker parses the DAG file for every task. Resolving a run's params updates the task's
    # Param objects in place, and a copied task shares them, so they are copied too.
    task = copy.deepcopy(dag.get_task(task_id))
    task.params = copy.deepcopy(task.params)
    run_after = run_after or logical_date
    dag_run = DagRun(
        dag_id=dag.dag_id, run_id=f"test__{run_after.isoformat()}", logical_date=logical_date,
        data_interval_start=logical_date, data_interval_end=logical_date, run_after=run_after,
        start_date=run_after, end_date=None, run_type=DagRunType.SCHEDULED, state=DagRunState.RUNNING,
        consumed_asset_events=[], partition_key=None, conf=conf or {},
    )
    instance = RuntimeTaskInstance.model_construct(
        id=uuid.uuid4(), task_id=task_id, dag_id=dag.dag_id, run_id=dag_run.run_id, try_number=1,
        dag_version_id=uuid.uuid4(), map_index=-1, task=task, max_tries=task.retries + 1,
        bundle_instance=LocalDagBundle(name="sid", path=str(DAG_FILE.parent)),
        _ti_context_from_server=TIRunContext(dag_run=dag_run, max_tries=task.retries + 1),
        start_date=run_after,
    )
    context = instance.get_template_context()
    instance.render_templates(context=context)
    return instance.task, context


def load_job(name: str):
    """Import jobs/<name>.py, which is a script and not a package module."""
    spec = importlib.util.spec_from_file_location(f"sid_job_{name}", ROOT / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def stub_spark_submit(tmp_path, monkeypatch):
    """Put a spark-submit on PATH that writes its arguments to a file, and return that file."""
    args_file = tmp_path / "spark_submit_args.txt"
    stub = tmp_path / "bin" / "spark-submit"
    stub.parent.mkdir()
    stub.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{args_file}"\nexit "${{STUB_EXIT_CODE:-0}}"\n')
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{stub.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", LOCAL_SPARK_CONNECTION)
    return args_file


def test_dag_file_has_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert sorted(dagbag.dags) == sorted(EXPECTED)


def test_dags_folder_parses_only_dag_file():
    # pipelines/.airflowignore keeps the DAG processor away from the Spark stage modules.
    assert [pathlib.Path(path).name for path in list_py_file_paths(str(DAG_FILE.parent), safe_mode=False)] == [
        DAG_FILE.name]
    folder = DagBag(dag_folder=str(DAG_FILE.parent))
    assert folder.import_errors == {}
    assert sorted(folder.dags) == sorted(EXPECTED)


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_task_graph_is_stage_chain(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    chain = EXPECTED[dag_id]["chain"]
    assert sorted(dag.task_ids) == sorted(chain)
    for position, task_id in enumerate(chain):
        task = dag.get_task(task_id)
        assert task.task_type == "SparkSubmitOperator"
        assert task.upstream_task_ids == set(chain[position - 1:position]), task_id
        assert task.downstream_task_ids == set(chain[position + 1:position + 2]), task_id


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_schedule_and_run_limits(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert dag.schedule == EXPECTED[dag_id]["schedule"]
    assert dag.timetable.expression == EXPECTED[dag_id]["cron"]
    assert str(dag.timetable.timezone) == "UTC"
    assert dag.max_active_runs == 1
    assert dag.catchup is False
    assert set(dag.params) == {"config_path", "catalog_path", "catalog_date"}


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_retries_back_off_and_pool(dagbag, dag_id):
    for task in dagbag.dags[dag_id].tasks:
        assert task.retries == 2, task.task_id
        assert task.retry_delay == timedelta(minutes=5), task.task_id
        # Airflow 3.3 takes a multiplier here; True would mean 1.0, a constant delay.
        assert task.retry_exponential_backoff == 2.0, task.task_id
        assert task.max_retry_delay == timedelta(hours=1), task.task_id
        assert task.pool == POOL, task.task_id
        assert task.retry_policy is not None, task.task_id


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_build_tasks_share_run_id_template(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    for task_id in EXPECTED[dag_id]["chain"][:-1]:
        args = dag.get_task(task_id).application_args
        assert option(args, "--run-id") == RUN_ID_TEMPLATE, task_id
        assert option(args, "--stage") == task_id
        assert option(args, "--mode") == EXPECTED[dag_id]["mode"], task_id
        assert dag.get_task(task_id).application.endswith("/jobs/build_sids.py")
    export = dag.get_task("export")
    assert export.application.endswith("/jobs/export_sids.py")
    assert option(export.application_args, "--output").endswith("/" + RUN_ID_TEMPLATE)


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_rendered_run_id_same_in_every_task(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    expected = f"{dag_id}__20261206T000000"
    for task_id in EXPECTED[dag_id]["chain"][:-1]:
        task, _ = render(dag, task_id)
        assert option(task.application_args, "--run-id") == expected, task_id
    export, _ = render(dag, "export")
    assert option(export.application_args, "--output") == str(ROOT / "out" / "sids" / expected)


def test_rendered_arguments_with_defaults(dagbag):
    task, _ = render(dagbag.dags["sid_incremental_daily"], "resolve")
    assert task.application == str(ROOT / "jobs" / "build_sids.py")
    assert task.application_args == [
        "--config", str(ROOT / "conf" / "beauty.yaml"),
        "--catalog-path", os.path.normpath(ROOT / ".." / "shared" / "data" / "amazon-beauty-2014"),
        "--mode", "incremental",
        "--run-id", "sid_incremental_daily__20261206T000000",
        "--stage", "resolve",
    ]
    python = str(ROOT / ".venv" / "bin" / "python")
    assert task.conf["spark.pyspark.python"] == python
    assert task.conf["spark.pyspark.driver.python"] == python
    assert task.conf["spark.driver.memory"] == "4g"
    assert f"-Dlog4j2.configurationFile=file:{ROOT}/conf/log4j2.properties" in task.conf["spark.driver.extraJavaOptions"]
    jars = sorted(str(path) for path in (ROOT / ".delta-jars").glob("*.jar"))
    assert task.jars == ",".join(jars)
    assert task.packages == ""


def test_params_and_date_fill_catalog_path(dagbag, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_SID_CATALOG_PATH", "/data/catalog/dt={date}")
    dag = dagbag.dags["sid_full_weekly"]

    task, _ = render(dag, "embed")
    assert option(task.application_args, "--catalog-path") == "/data/catalog/dt=2026-12-06"

    task, _ = render(dag, "embed", conf={"catalog_date": "2026-12-01", "config_path": "/etc/sid/prod.yaml"})
    assert option(task.application_args, "--catalog-path") == "/data/catalog/dt=2026-12-01"
    assert option(task.application_args, "--config") == "/etc/sid/prod.yaml"

    task, _ = render(dag, "embed", conf={"catalog_path": "catalogs/{date}.parquet"})
    assert option(task.application_args, "--catalog-path") == str(ROOT / "catalogs" / "2026-12-06.parquet")


def test_catalog_date_param_rejects_other_formats(dagbag):
    param = dagbag.dags["sid_full_weekly"].params.get_param("catalog_date")
    assert param.resolve("2026-12-01") == "2026-12-01"
    with pytest.raises(ParamValidationError):
        param.resolve("12/01/2026")


def test_manual_run_without_logical_date(dagbag, monkeypatch):
    # A run triggered without a logical date is named after its trigger time.
    monkeypatch.setenv("AIRFLOW_VAR_SID_CATALOG_PATH", "/data/catalog/dt={date}")
    run_after = pendulum.datetime(2026, 12, 7, 13, 45, 10, tz="UTC")
    task, context = render(dagbag.dags["sid_full_weekly"], "train", logical_date=None, run_after=run_after)
    assert context["dag_run"].logical_date is None
    assert option(task.application_args, "--run-id") == "sid_full_weekly__20261207T134510"
    assert option(task.application_args, "--catalog-path") == "/data/catalog/dt=2026-12-07"


def test_variables_from_environment(dagbag, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_SID_REPO_ROOT", "/opt/sid-pipeline")
    monkeypatch.setenv("AIRFLOW_VAR_SID_SPARK_PACKAGES", "io.delta:delta-spark_4.2_2.13:4.4.0")
    monkeypatch.setenv("AIRFLOW_VAR_SID_DRIVER_MEMORY", "8g")
    monkeypatch.setenv("AIRFLOW_VAR_SID_EXPORT_DIR", "/srv/sids")

    task, _ = render(dagbag.dags["sid_full_weekly"], "publish")
    assert task.application == "/opt/sid-pipeline/jobs/build_sids.py"
    assert option(task.application_args, "--config") == "/opt/sid-pipeline/conf/beauty.yaml"
    assert task.conf["spark.pyspark.python"] == "/opt/sid-pipeline/.venv/bin/python"
    assert task.conf["spark.driver.memory"] == "8g"
    assert task.jars == ""  # no .delta-jars folder under that root: --packages instead
    assert task.packages == "io.delta:delta-spark_4.2_2.13:4.4.0"

    export, _ = render(dagbag.dags["sid_full_weekly"], "export")
    assert option(export.application_args, "--output") == "/srv/sids/sid_full_weekly__20261206T000000"


def test_spark_connection_variable_read_at_parse(monkeypatch, stub_spark_submit):
    monkeypatch.setenv("AIRFLOW_VAR_SID_SPARK_CONN_ID", "spark_cluster")
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_CLUSTER", '{"conn_type": "spark", "host": "spark://127.0.0.1", "port": 7077}')
    dag = DagBag(dag_folder=str(DAG_FILE)).dags["sid_full_weekly"]
    task, context = render(dag, "train")
    task.execute(context)
    assert option(stub_spark_submit.read_text().splitlines(), "--master") == "spark://127.0.0.1:7077"


def test_spark_submit_command_line(dagbag, stub_spark_submit):
    task, context = render(dagbag.dags["sid_incremental_daily"], "embed")
    task.execute(context)
    args = stub_spark_submit.read_text().splitlines()
    print("spark-submit " + " ".join(args))

    assert option(args, "--master") == "local[2]"
    assert option(args, "--name") == "sid-embed"
    assert option(args, "--jars") == task.jars
    assert f"spark.pyspark.driver.python={ROOT}/.venv/bin/python" in args
    assert "spark.driver.memory=4g" in args
    application = args.index(str(ROOT / "jobs" / "build_sids.py"))
    assert args[application + 1:] == task.application_args
    assert option(args, "--run-id") == "sid_incremental_daily__20261206T000000"


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_jobs_accept_rendered_arguments(dagbag, dag_id):
    # The jobs' own argument parsers, so a renamed or removed option fails here.
    from pipelines.build import check_run_id

    build_job, export_job = load_job("build_sids"), load_job("export_sids")
    dag = dagbag.dags[dag_id]
    for task_id in EXPECTED[dag_id]["chain"][:-1]:
        task, _ = render(dag, task_id)
        args = build_job.parse_args(task.application_args)
        assert args.mode == EXPECTED[dag_id]["mode"]
        assert args.stage == task_id
        assert check_run_id(args.run_id) == f"{dag_id}__20261206T000000"
        assert args.config == str(ROOT / "conf" / "beauty.yaml")
    export, _ = render(dag, "export")
    args = export_job.parse_args(export.application_args)
    assert args.output == str(ROOT / "out" / "sids" / f"{dag_id}__20261206T000000")
    assert args.config == str(ROOT / "conf" / "beauty.yaml")


@pytest.mark.parametrize(("exit_code", "action"), [
    (1, RetryAction.DEFAULT),  # any other failure: retried with back-off
    (2, RetryAction.FAIL),  # invalid config or input
    (3, RetryAction.FAIL),  # quality gate failed
    (4, RetryAction.DEFAULT),  # the local warehouse is busy: retried with back-off
])
def test_retry_policy_by_exit_code(dagbag, stub_spark_submit, monkeypatch, exit_code, action):
    monkeypatch.setenv("STUB_EXIT_CODE", str(exit_code))
    task, context = render(dagbag.dags["sid_full_weekly"], "publish")
    with pytest.raises(AirflowException) as failure:
        task.execute(context)
    decision = task.retry_policy.evaluate(failure.value, try_number=1, max_tries=task.retries + 1, context=context)
    assert decision.action == action


def test_dags_serialize(dagbag):
    # The DAG processor stores this form; an unserializable argument fails here, not in production.
    for dag_id in EXPECTED:
        serialized = DagSerialization.to_dict(dagbag.dags[dag_id])
        assert serialized["dag"]["dag_id"] == dag_id
