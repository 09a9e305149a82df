"""Validation of the embed.image, embed.collaborative and embed.fusion sections."""

import pytest

from sid.config import load_config
from sid.errors import ConfigError


def test_multimodal_defaults_are_text_only():
    embed = load_config().embed
    assert embed.image.source == "none"
    assert embed.collaborative.method == "none"
    assert not embed.fusion.contrastive.enabled


def test_fused_beauty_config_loads():
    embed = load_config("conf/beauty_fused.yaml").embed
    assert embed.collaborative.method == "svd"
    assert embed.fusion.contrastive.enabled


def test_vector_source_needs_dim():
    with pytest.raises(ConfigError, match="embed.image.dim=None must be >= 1 when embed.image.source=vector"):
        load_config(overrides={"embed.image": {"source": "vector"}})


def test_path_source_needs_model_path():
    with pytest.raises(ConfigError, match="embed.image.model_path is required"):
        load_config(overrides={"embed.image": {"source": "path"}})


def test_unknown_fusion_modality_rejected():
    with pytest.raises(ConfigError, match=r"unknown modality \['audio'\]"):
        load_config(overrides={"embed.fusion": {"weights": {"audio": 1.0}}})


def test_negative_weight_rejected():
    with pytest.raises(ConfigError, match="embed.fusion.weights.text=-1.0 must be >= 0"):
        load_config(overrides={"embed.fusion": {"weights": {"text": -1.0}}})


def test_unknown_collaborative_method_rejected():
    with pytest.raises(ConfigError, match="choose one of: none, svd, word2vec"):
        load_config(overrides={"embed.collaborative": {"method": "als"}})


def test_contrastive_batch_needs_negatives():
    with pytest.raises(ConfigError, match="batch_size=1 must be >= 2"):
        load_config(overrides={"embed.fusion": {"contrastive": {"batch_size": 1}}})


def test_unknown_nested_key_rejected():
    with pytest.raises(ConfigError, match=r"embed\.fusion\.contrastive\.epoch\b"):
        load_config(overrides={"embed.fusion": {"contrastive": {"epoch": 3}}})
