"""The laptop and cluster profiles under conf/ load with the config loader."""

import pathlib

import pytest

from sid.config import load_config

CONF = pathlib.Path(__file__).resolve().parents[2] / "conf"


@pytest.mark.parametrize("name", ["local.yaml", "cluster.yaml"])
def test_profile_loads(name):
    config = load_config(CONF / name)
    assert config.quantize.train_sample_size >= config.codebook_sizes()[0]
    assert config.spark.shuffle_partitions >= 1


def test_local_profile_stays_local():
    config = load_config(CONF / "local.yaml")
    assert config.spark.master.startswith("local")
    assert config.ray.address is None
    assert config.spark.metastore_uri is None


def test_cluster_profile_joins_a_cluster():
    config = load_config(CONF / "cluster.yaml")
    assert not config.spark.master.startswith("local")
    assert config.ray.address == "auto"
