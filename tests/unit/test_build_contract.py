"""Run ids, commit retries, the export vocabulary and the incremental config, without Spark."""

import pytest

from pipelines.build import STAGES, check_run_id, new_run_id
from pipelines.export import vocabulary
from sid import tables
from sid.config import load_config
from sid.errors import BusyError, ConfigError


@pytest.mark.parametrize("run_id", ["nightly-20261204", "a", "sid_full_weekly__2026-12-04", "v1.2"])
def test_valid_run_ids(run_id):
    assert check_run_id(run_id) == run_id


@pytest.mark.parametrize("run_id", ["", "-leading-dash", "has space", "quote'd", "x" * 101, "scheduled__2026+00:00"])
def test_invalid_run_ids_name_the_value(run_id):
    with pytest.raises(ConfigError, match="--run-id"):
        check_run_id(run_id)


def test_generated_run_ids_are_valid_and_distinct():
    first, second = new_run_id(), new_run_id()
    assert check_run_id(first) == first
    assert first != second


def test_stage_order():
    assert STAGES == ("embed", "train", "resolve", "publish")


def test_commit_retried_after_a_delta_conflict(monkeypatch):
    from delta.exceptions import ConcurrentAppendException

    monkeypatch.setattr(tables, "COMMIT_BACKOFF_SECONDS", 0.0)
    attempts = []

    def commit():
        attempts.append(1)
        if len(attempts) < 3:
            raise ConcurrentAppendException(message="files were added by a concurrent update")
        return "committed"

    assert tables.with_commit_retries(commit, "sid.item_sids") == "committed"
    assert len(attempts) == 3


def test_commit_conflict_reported_after_the_last_attempt(monkeypatch):
    from delta.exceptions import ConcurrentAppendException

    monkeypatch.setattr(tables, "COMMIT_BACKOFF_SECONDS", 0.0)

    def commit():
        raise ConcurrentAppendException(message="files were added by a concurrent update")

    with pytest.raises(BusyError, match="sid.item_sids: the commit conflicted with another writer 5 times"):
        tables.with_commit_retries(commit, "sid.item_sids")


def test_other_errors_are_not_retried(monkeypatch):
    attempts = []

    def commit():
        attempts.append(1)
        raise ValueError("bad column")

    with pytest.raises(ValueError):
        tables.with_commit_retries(commit, "sid.item_sids")
    assert len(attempts) == 1


def test_vocabulary_offsets():
    tokens = vocabulary([3, 2, 4])
    assert tokens == ["<a_0>", "<a_1>", "<a_2>", "<b_0>", "<b_1>", "<c_0>", "<c_1>", "<c_2>", "<c_3>"]
    # Level 2, code 1 has offset id 3 + 2 + 1.
    assert tokens.index("<c_1>") == 6


def test_incremental_config_defaults_and_bounds():
    config = load_config()
    assert config.incremental.retention_days == 90
    assert config.incremental.retire_missing is True
    assert load_config(overrides={"incremental.retention_days": 0}).incremental.retention_days == 0
    with pytest.raises(ConfigError, match="incremental.retention_days=-1"):
        load_config(overrides={"incremental.retention_days": -1})
    with pytest.raises(ConfigError, match="unknown config key"):
        load_config(overrides={"incremental.retention": 5})
