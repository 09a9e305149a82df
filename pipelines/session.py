"""Spark and Ray sessions built from config alone."""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import pathlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from sid.config import PipelineConfig, RayConfig, SparkConfig
from sid.errors import BusyError, ConfigError, QualityGateError, SidError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = [
    "DELTA_MAVEN_VERSION", "build_spark", "exit_code", "init_ray", "job_logger", "job_session", "loopback_environment",
    "metastore_lock",
]

logger = logging.getLogger(__name__)

# Maven version of io.delta:delta-spark; must match the delta-spark pin in setup.cfg.
DELTA_MAVEN_VERSION = "4.4.0"

# Telemetry off and every service on loopback (see README, "Settings").
LOOPBACK_ENVIRONMENT = {
    "SPARK_LOCAL_IP": "127.0.0.1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def loopback_environment() -> None:
    """Set the telemetry and loopback variables unless the caller set them already."""
    for key, value in LOOPBACK_ENVIRONMENT.items():
        os.environ.setdefault(key, value)


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def job_logger(name: str) -> logging.Logger:
    """Set up a job's logging: libraries at WARNING, the pipeline's own lines at INFO."""
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT, stream=sys.stderr, force=True)
    for logger_name in ("sid", "pipelines", name):
        logging.getLogger(logger_name).setLevel(logging.INFO)
    return logging.getLogger(name)


def exit_code(error: SidError) -> int:
    """Return a job's exit code for ``error``: 4 busy (retry later), 3 quality gate failed,
    2 invalid configuration or input."""
    if isinstance(error, BusyError):
        return 4
    if isinstance(error, QualityGateError):
        return 3
    return 2


@contextlib.contextmanager
def job_session(config: PipelineConfig, *, holder: str, with_ray: bool = False) -> Iterator[SparkSession]:
    """Hold the warehouse lock, start Ray (optionally) and Spark, and stop Spark before the
    lock is released, so the next job finds the Derby metastore free."""
    with metastore_lock(config.spark, holder=holder):
        if with_ray:
            # Ray first: starting it after the Spark JVM resets py4j's idle connections.
            init_ray(config.ray)
        spark = build_spark(config.spark)
        try:
            yield spark
        finally:
            spark.stop()


@contextlib.contextmanager
def metastore_lock(config: SparkConfig, *, holder: str) -> Iterator[None]:
    """Hold an exclusive lock on the local warehouse while a job runs.

    The embedded Derby metastore admits one Spark process at a time; a second one would
    fail deep inside Hive. This lock (a file in ``warehouse_dir``) makes the second job stop
    at once with a message naming the holder. With ``metastore_uri`` set (a shared Hive
    metastore), concurrent jobs are allowed and Delta's commit checks keep tables intact.
    """
    import fcntl

    if config.metastore_uri:
        yield
        return
    warehouse = pathlib.Path(config.warehouse_dir).resolve()
    warehouse.mkdir(parents=True, exist_ok=True)
    path = warehouse / ".sid-pipeline.lock"
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            raise BusyError(
                f"another job holds the local warehouse {warehouse} ({owner}); its embedded Derby metastore "
                f"admits one job at a time. Wait for it to finish, or set spark.metastore_uri to a shared "
                f"Hive metastore to run jobs side by side"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid={os.getpid()} {holder}\n")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_spark(config: SparkConfig) -> SparkSession:
    """Return a SparkSession with Delta Lake and a persistent metastore.

    Locally (``master`` local[...]) tables and an embedded Derby metastore live under
    ``warehouse_dir``, so a later session sees the same tables. ``metastore_uri`` points at
    a shared Hive metastore instead. ``extra_conf`` is applied last and wins.
    """
    from pyspark.sql import SparkSession

    loopback_environment()
    if config.master.startswith("local"):
        # Local Python workers run the driver's interpreter, so they see the same packages.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    warehouse = pathlib.Path(config.warehouse_dir).resolve()
    warehouse.mkdir(parents=True, exist_ok=True)

    builder = (
        SparkSession.builder.master(config.master)
        .appName(config.app_name)
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.sql.warehouse.dir", str(warehouse))
        .config("spark.sql.shuffle.partitions", str(config.shuffle_partitions))
        .config("spark.driver.memory", config.driver_memory)
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.databricks.delta.snapshotPartitions", "2")
    )
    if config.master.startswith("local"):
        builder = builder.config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
    if config.metastore_uri:
        builder = builder.config("spark.hadoop.hive.metastore.uris", config.metastore_uri)
    else:
        derby = warehouse / "metastore_db"
        builder = (
            builder.config("spark.hadoop.javax.jdo.option.ConnectionURL", f"jdbc:derby:;databaseName={derby};create=true")
            .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={warehouse}")
        )
    builder = _with_delta_jars(builder, config)
    for key, value in config.extra_conf.items():
        builder = builder.config(key, value)

    spark = builder.enableHiveSupport().getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    _check_delta_available(spark)
    return spark


def _with_delta_jars(builder, config: SparkConfig):
    """Put Delta's jars on the classpath: a local folder when present, else Maven coordinates."""
    import pyspark

    jars = sorted(glob.glob(str(pathlib.Path(config.delta_jars_dir or "").resolve() / "*.jar"))) if config.delta_jars_dir else []
    if jars:
        return builder.config("spark.jars", ",".join(jars))
    spark_minor = ".".join(pyspark.__version__.split(".")[:2])
    coordinate = f"io.delta:delta-spark_{spark_minor}_2.13:{DELTA_MAVEN_VERSION}"
    logger.info("no Delta jars in spark.delta_jars_dir=%s; resolving %s", config.delta_jars_dir, coordinate)
    return builder.config("spark.jars.packages", coordinate)


def _check_delta_available(spark: SparkSession) -> None:
    jvm = spark.sparkContext._jvm
    try:
        jvm.java.lang.Class.forName(
            "io.delta.sql.DeltaSparkSessionExtension", True, jvm.Thread.currentThread().getContextClassLoader()
        )
    except Exception as error:  # py4j wraps ClassNotFoundException
        raise ConfigError(
            "Delta Lake classes are not on Spark's classpath. Under spark-submit pass them on the "
            "command line: scripts/spark-submit.sh adds --jars .delta-jars/*.jar, or use "
            f"--packages io.delta:delta-spark_<spark major.minor>_2.13:{DELTA_MAVEN_VERSION}"
        ) from error


def init_ray(config: RayConfig) -> None:
    """Connect to Ray at ``config.address`` or start a local runtime; reuse one already up."""
    import ray

    loopback_environment()
    if ray.is_initialized():
        return
    if config.address:
        ray.init(address=config.address, logging_level=logging.WARNING)
        return
    ray.init(
        num_cpus=config.num_cpus,
        include_dashboard=config.include_dashboard,
        logging_level=logging.WARNING,
        _node_ip_address="127.0.0.1",
    )
