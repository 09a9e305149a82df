"""Incremental runs, retirement, version diff, export, killed runs and concurrent writers,
all with the real job, Spark, Delta and MLflow (fixtures in tests/conftest.py)."""

import json
import threading

import pytest

from tests.conftest import HELD_BACK, incremental_snapshots, run_job

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def sids_of(spark, database, version):
    rows = spark.sql(f"SELECT item_id, sid FROM {database}.item_sids WHERE codebook_version = '{version}'").collect()
    return {row.item_id: row.sid for row in rows}


def test_incremental_days_never_move_a_published_sid(spark, incremental_runs):
    # The table as the base build left it: the commit before the first incremental MERGE.
    history = spark.sql("DESCRIBE HISTORY sid_inc.item_sids").collect()
    first_merge = min(row.version for row in history if row.operation == "MERGE")
    before = spark.sql(f"SELECT item_id, sid FROM sid_inc.item_sids VERSION AS OF {first_merge - 1} "
                       f"WHERE codebook_version = 'inc-base'").collect()
    base = {row.item_id: row.sid for row in before}
    # The base build saw every clean item but the held-back ones.
    assert not set(HELD_BACK) & set(base)
    rows = spark.sql("SELECT item_id, sid, mlflow_run_id FROM sid_inc.item_sids "
                     "WHERE codebook_version = 'inc-base'").collect()
    after = {row.item_id: row.sid for row in rows}
    for item_id, sid in base.items():
        assert after[item_id] == sid
    # Each held-back item got exactly one row, in the version it joined.
    assert set(HELD_BACK) <= set(after)
    assert len(rows) == len(after)


def test_incremental_sids_unique_against_retired_ones(spark, incremental_runs):
    row = spark.sql("SELECT count(*) AS n, count(DISTINCT sid) AS sids FROM sid_inc.item_sids "
                    "WHERE codebook_version = 'inc-base'").collect()[0]
    # Retired items keep their SIDs reserved, so even with them every SID is distinct.
    assert row.n == row.sids


def test_retired_and_reactivated_items(spark, incremental_runs):
    retired = {row.item_id for row in spark.sql(
        "SELECT item_id FROM sid_inc.retired_items WHERE codebook_version = 'inc-base'").collect()}
    # filler-001 left on day 1; filler-000 left on day 1 and came back on day 2.
    assert retired == {"filler-001"}
    current = {row.item_id for row in spark.sql(
        "SELECT item_id FROM sid_inc.item_sids WHERE codebook_version = 'inc-base'").collect()}
    assert "filler-001" in current
    day2 = incremental_runs["day2"].stderr
    assert "retired=0 reactivated=1" in day2
    assert "retired=2 reactivated=0" in incremental_runs["day1"].stderr


def test_incremental_counts_conserved(incremental_runs):
    snapshots = incremental_snapshots()
    day1 = incremental_runs["day1"].stderr
    assert f"items_in={len(snapshots['day1'])} new_sids=3 " in day1
    day2 = incremental_runs["day2"].stderr
    assert f"items_in={len(snapshots['day2'])} new_sids=3 " in day2


def test_rerun_of_a_published_incremental_run_changes_nothing(spark, incremental_runs):
    rerun = incremental_runs["day2_rerun"].stderr
    assert "inserted=0 updated=0" in rerun
    rows = spark.sql("SELECT count(*) AS n FROM sid_inc.item_sids_staged WHERE run_id = 'inc-day2'").collect()
    assert rows[0].n == 3


def test_full_rebuild_diff_against_active_version(spark, incremental_runs):
    active = spark.sql("SELECT codebook_version FROM sid_inc.active_version").collect()
    assert [row.codebook_version for row in active] == ["inc-rebuild"]
    counts = {row.change: row.n for row in spark.sql(
        "SELECT change, count(*) AS n FROM sid_inc.sid_version_diff WHERE from_version = 'inc-base' "
        "AND to_version = 'inc-rebuild' GROUP BY change").collect()}
    old = sids_of(spark, "sid_inc", "inc-base")
    old.pop("filler-001")  # retired: absent from the old version's live items
    new = sids_of(spark, "sid_inc", "inc-rebuild")
    changed = sum(1 for item in old if item in new and old[item] != new[item])
    assert counts.get("changed", 0) == changed
    assert counts.get("added", 0) == len(set(new) - set(old))
    assert counts.get("removed", 0) == len(set(old) - set(new))
    assert "version_diff from=inc-base to=inc-rebuild" in incremental_runs["rebuild"].stderr


def test_current_view_excludes_retired_items(spark, incremental_runs):
    current = spark.sql("SELECT codebook_version, count(*) AS n FROM sid_inc.item_sids_current "
                        "GROUP BY codebook_version").collect()
    assert [(row.codebook_version, row.n) for row in current] == [("inc-rebuild", len(sids_of(
        spark, "sid_inc", "inc-rebuild")))]


def test_export_tokens_offsets_and_vocabulary(spark, workspace, incremental_runs):
    folder = workspace / "export_inc"
    meta = json.loads((folder / "vocab.json").read_text())
    assert meta["codebook_version"] == "inc-rebuild"
    sizes = [level["size"] for level in meta["levels"]]
    assert sizes[:2] == [8, 8]
    assert [level["offset"] for level in meta["levels"]] == [0, 8, 16][:len(sizes)]
    vocab = (folder / "vocab.txt").read_text().split()
    assert len(vocab) == sum(sizes) == meta["tokens"]
    assert vocab[:2] == ["<a_0>", "<a_1>"]
    assert vocab[8] == "<b_0>"
    exported = spark.read.json(str(folder / "items")).collect()
    assert len(exported) == meta["items"] == len(sids_of(spark, "sid_inc", "inc-rebuild"))
    for row in exported:
        assert "".join(row.tokens) == row.sid
        assert [vocab[index] for index in row.token_ids] == row.tokens


def test_killed_run_rerun_equals_clean_run(spark, killed_and_rerun):
    killed_log, rerun = killed_and_rerun
    assert "summary" not in killed_log
    clean_version = spark.sql("SELECT codebook_version FROM sid_bad.active_version").collect()[0].codebook_version
    clean = sids_of(spark, "sid_bad", clean_version)
    rerun_sids = sids_of(spark, "sid_kill", "kill-1")
    assert rerun_sids == clean
    # One copy of every row despite the killed attempt.
    for table, key in (("item_embeddings", "embedding_version"), ("item_sids", "codebook_version")):
        row = spark.sql(f"SELECT count(*) AS n, count(DISTINCT item_id) AS items FROM sid_kill.{table} "
                        f"WHERE {key} = 'kill-1'").collect()[0]
        assert row.n == row.items == len(clean)
    quarantined = spark.sql("SELECT count(*) AS n FROM sid_kill.quarantine WHERE run_id = 'kill-1'").collect()[0].n
    clean_quarantined = spark.sql(f"SELECT count(*) AS n FROM sid_bad.quarantine "
                                  f"WHERE run_id = '{clean_version}'").collect()[0].n
    assert quarantined == clean_quarantined
    active = spark.sql("SELECT codebook_version FROM sid_kill.active_version").collect()
    assert [row.codebook_version for row in active] == ["kill-1"]


def test_second_job_on_a_locked_warehouse_exits_4(workspace):
    import fcntl

    lock = workspace / "warehouse" / ".sid-pipeline.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        handle.write("pid=0 a test holding the lock\n")
        handle.flush()
        result = run_job(["--config", str(workspace / "bad.yaml"), "--set", "tables.database=sid_locked"],
                         workspace, timeout=300)
        fcntl.flock(handle, fcntl.LOCK_UN)
    assert result.returncode == 4
    assert "another job holds the local warehouse" in result.stderr
    assert "a test holding the lock" in result.stderr


def test_concurrent_writers_leave_every_version_intact(spark):
    """Two threads of one Spark application commit to one Delta table at once, four times."""
    from sid import tables

    table = "sid_bad.concurrent_writes"
    spark.sql(f"DROP TABLE IF EXISTS {table}")
    schema = "version STRING NOT NULL, value INT"
    # Created first: the writers race on commits, not on creating the metastore entry.
    tables.ensure_table(spark, table, schema)
    errors = []

    def write(version: str) -> None:
        try:
            frame = spark.createDataFrame([(version, index) for index in range(50)], schema)
            tables.write_version(frame, spark, table, schema=schema, key_column="version", key_value=version)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    for round_number in range(4):
        threads = [threading.Thread(target=write, args=(f"r{round_number}-{side}",)) for side in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors
    rows = spark.sql(f"SELECT version, count(*) AS n, count(DISTINCT value) AS values FROM {table} "
                     f"GROUP BY version").collect()
    assert sorted((row.version, row.n, row["values"]) for row in rows) == sorted(
        (f"r{round_number}-{side}", 50, 50) for round_number in range(4) for side in ("a", "b"))
    spark.sql(f"DROP TABLE {table}")
