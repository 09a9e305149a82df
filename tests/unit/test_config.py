import pytest

from sid.config import PipelineConfig, config_hash, load_config
from sid.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "conf.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_file():
    config = load_config()
    assert config.quantize.levels == 3
    assert config.codebook_sizes() == (256, 256, 256)
    assert config.spark.master == "local[*]"


def test_yaml_overrides_defaults(tmp_path):
    config = load_config(write(tmp_path, "quantize:\n  levels: 2\n  codebook_size: [64, 32]\n"))
    assert config.codebook_sizes() == (64, 32)
    assert config.embed.batch_size == 64


def test_unknown_key_named_with_valid_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"quantize\.level\b.*valid keys are:.*levels"):
        load_config(write(tmp_path, "quantize:\n  level: 2\n"))


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key.*sparkk"):
        load_config(write(tmp_path, "sparkk:\n  master: local[1]\n"))


def test_wrong_type_names_value_and_expected_type(tmp_path):
    with pytest.raises(ConfigError, match=r"quantize\.levels='three'.*expected int"):
        load_config(write(tmp_path, "quantize:\n  levels: three\n"))


def test_bool_is_not_an_int(tmp_path):
    with pytest.raises(ConfigError, match=r"run\.seed=True"):
        load_config(write(tmp_path, "run:\n  seed: true\n"))


def test_literal_lists_choices(tmp_path):
    with pytest.raises(ConfigError, match="catalog.format='csv'.*choose one of: recbole, parquet, jsonl, delta"):
        load_config(write(tmp_path, "catalog:\n  format: csv\n"))


def test_codebook_size_list_must_match_levels(tmp_path):
    with pytest.raises(ConfigError, match=r"codebook_size=\[8, 8\] has 2 entries but quantize.levels=3"):
        load_config(write(tmp_path, "quantize:\n  codebook_size: [8, 8]\n"))


def test_range_checks(tmp_path):
    with pytest.raises(ConfigError, match="quantize.top_k=0 must be >= 1"):
        load_config(write(tmp_path, "quantize:\n  top_k: 0\n"))


def test_missing_file():
    with pytest.raises(ConfigError, match="config file not found: /nonexistent.yaml"):
        load_config("/nonexistent.yaml")


def test_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "quantize: [unclosed\n"))


def test_dotted_overrides_win():
    config = load_config(overrides={"catalog.path": "/data/beauty", "run.item_limit": 10})
    assert config.catalog.path == "/data/beauty"
    assert config.run.item_limit == 10


def test_override_without_section():
    with pytest.raises(ConfigError, match="section.key"):
        load_config(overrides={"seed": 1})


def test_flat_params_cover_every_section():
    params = PipelineConfig().flat_params()
    assert params["quantize.levels"] == "3"
    assert params["catalog.format"] == "recbole"
    assert {key.split(".")[0] for key in params} == {
        "spark", "ray", "mlflow", "catalog", "embed", "quantize", "resolve", "tables", "evaluate", "gate",
        "incremental", "run",
    }


def test_config_hash_tracks_quantizer_settings_only():
    base = load_config()
    assert config_hash(base) == config_hash(load_config(overrides={"spark.master": "local[1]"}))
    assert config_hash(base) != config_hash(load_config(overrides={"quantize.levels": 4}))


def test_gate_defaults_require_unique_sids():
    config = load_config()
    assert config.gate.thresholds == {"final/collision_rate": {"max": 0.0}}
    assert config.evaluate.hit_rate_ks == (10, 20, 100)


def test_gate_thresholds_from_yaml(tmp_path):
    config = load_config(write(tmp_path, "gate:\n  thresholds:\n    final/gini: {max: 1}\n    purity/level_1: {min: 0.5}\n"))
    assert config.gate.thresholds == {"final/gini": {"max": 1.0}, "purity/level_1": {"min": 0.5}}


def test_gate_unknown_bound_rejected(tmp_path):
    with pytest.raises(ConfigError, match=r"invalid config section gate:.*unknown bounds \['mx'\]"):
        load_config(write(tmp_path, "gate:\n  thresholds:\n    final/gini: {mx: 1}\n"))


def test_gate_bound_must_be_number(tmp_path):
    with pytest.raises(ConfigError, match=r"gate\.thresholds\.final/gini\.max='low'.*expected float"):
        load_config(write(tmp_path, "gate:\n  thresholds:\n    final/gini: {max: low}\n"))


def test_gate_min_above_max_rejected(tmp_path):
    with pytest.raises(ConfigError, match="min 2.0 greater than max 1.0"):
        load_config(write(tmp_path, "gate:\n  thresholds:\n    final/gini: {min: 2, max: 1}\n"))


def test_evaluate_ranges(tmp_path):
    with pytest.raises(ConfigError, match=r"evaluate\.hit_rate_ks=\[0, 10\] must list cutoffs >= 1"):
        load_config(write(tmp_path, "evaluate:\n  hit_rate_ks: [0, 10]\n"))
    with pytest.raises(ConfigError, match="evaluate.neighbour_k=0 must be >= 1"):
        load_config(write(tmp_path, "evaluate:\n  neighbour_k: 0\n"))


def test_extra_conf_values_stay_strings(tmp_path):
    config = load_config(write(tmp_path, "spark:\n  extra_conf:\n    spark.executor.cores: 2\n"))
    assert config.spark.extra_conf == {"spark.executor.cores": "2"}
