"""The README's warehouse SQL runs as written, from a second SparkSession on the job's
metastore, and a table reads without Spark through the deltalake package."""

import pytest

from benchmarks.incremental_beauty import readme_statements

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def test_readme_has_the_common_questions():
    statements = readme_statements()
    assert len(statements) >= 9
    assert any("sid_version_diff" in statement for statement in statements)
    assert any("VERSION AS OF" in statement for statement in statements)


@pytest.mark.parametrize("index", range(len(readme_statements())))
def test_readme_statement_runs(spark, beauty_builds, index):
    statement = readme_statements()[index]
    rows = spark.sql(statement).collect()
    # Questions about the whole table have answers on the 2,000-item slice.
    if any(key in statement for key in ("GROUP BY codebook_version", "GROUP BY codes[0]", "DESCRIBE HISTORY",
                                        "VERSION AS OF", "ORDER BY metric")):
        assert rows, statement


def test_level_one_distribution_adds_up(spark, beauty_builds):
    statement = next(s for s in readme_statements() if "GROUP BY codes[0]" in s).replace("LIMIT 10", "")
    total = sum(row.items for row in spark.sql(statement).collect())
    assert total == spark.table("sid.item_sids_current").count()


def test_deltalake_reads_item_sids_without_spark(spark, beauty_builds):
    from deltalake import DeltaTable

    location = spark.sql("DESCRIBE DETAIL sid.item_sids").collect()[0].location
    frame = DeltaTable(location).to_pandas(columns=["item_id", "codebook_version", "sid"])
    assert len(frame) == spark.table("sid.item_sids").count()
    assert frame.groupby("codebook_version")["sid"].nunique().min() == frame.groupby("codebook_version").size().min()
