"""Data-parallel RQ-VAE training with Ray Train (TorchTrainer) on Ray Data shards.

Each worker streams its shard of the Parquet training sample; gradients are averaged by
DistributedDataParallel and the codebooks stay identical on every worker (see
``sid.quantize._rqvae_training``). Rank 0 saves the trained quantizer as a checkpoint
folder (arrays plus JSON), which the driver loads; no vectors reach the driver.
"""

from __future__ import annotations

import logging
import math
import pathlib
import tempfile
from typing import Any

import numpy as np

from sid.config import PipelineConfig, QuantizeConfig

__all__ = ["train_rqvae_data_parallel"]

logger = logging.getLogger(__name__)


def train_rqvae_data_parallel(sample_folder: pathlib.Path, config: PipelineConfig, *, quantize: QuantizeConfig,
                              pairs_folder: pathlib.Path | None = None):
    """Train an RQ-VAE on ``quantize.rqvae.num_workers`` Ray Train workers; return (RQVAE, stats)."""
    import ray.data
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from pipelines.train import HOLDOUT_BUCKETS
    from sid.quantize import RQVAE, build_quantizer

    options = quantize.rqvae
    _check_spare_cpus(options.num_workers * quantize.num_cpus)
    threshold = int(options.holdout_fraction * HOLDOUT_BUCKETS)
    items = ray.data.read_parquet(str(sample_folder), columns=["embedding", "holdout_bucket"])
    datasets = {
        "train": items.filter(expr=f"holdout_bucket >= {threshold}"),
        "holdout": items.filter(expr=f"holdout_bucket < {threshold}"),
    }
    if options.contrastive and pairs_folder is not None:
        datasets["pairs"] = ray.data.read_parquet(str(pairs_folder), columns=["left_embedding", "right_embedding"])

    # Only a count and one row's width reach the driver.
    train_rows = datasets["train"].count()
    dim = len(items.take(1)[0]["embedding"])
    template = build_quantizer(quantize, seed=config.run.seed, use_gpu=quantize.num_gpus > 0)
    loop_config = {
        "settings": template.settings(), "dim": dim, "use_gpu": quantize.num_gpus > 0,
        "batches_per_epoch": max(1, math.ceil(train_rows / options.num_workers / options.batch_size)),
        "num_threads": quantize.num_cpus,
    }
    resources: dict[str, float] = {"CPU": quantize.num_cpus}
    if quantize.num_gpus > 0:
        resources["GPU"] = quantize.num_gpus
    storage = pathlib.Path(config.run.work_dir).resolve() / "ray_train"
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=options.num_workers, use_gpu=quantize.num_gpus > 0,
                                     resources_per_worker=resources),
        datasets=datasets,
        run_config=RunConfig(storage_path=str(storage), name=f"rqvae-{config.run.seed}",
                             checkpoint_config=CheckpointConfig(num_to_keep=1)),
    )
    logger.info("rqvae_data_parallel workers=%d train_rows=%d dim=%d", options.num_workers, train_rows, dim)
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"Ray Train finished without a checkpoint (error: {result.error}); see the worker logs")
    with result.checkpoint.as_directory() as folder:
        quantizer = RQVAE.load(folder)
    return quantizer, dict(quantizer.fit_stats_)


def _check_spare_cpus(worker_cpus: int) -> None:
    """Raise when the workers would take every CPU, because Ray Data's reads would then wait forever."""
    import ray

    total = ray.cluster_resources().get("CPU", 0)
    if total < worker_cpus + 1:
        raise RuntimeError(
            f"Ray has {total:g} CPUs but the Ray Train workers request {worker_cpus} "
            "(quantize.rqvae.num_workers x quantize.num_cpus) and Ray Data needs at least one more to read "
            "the sample; lower num_workers or give Ray more CPUs (ray.num_cpus)"
        )


class _ShardBatchSource:
    """Float32 batches of this worker's Ray Data shards (see ``_rqvae_training.BatchSource``)."""

    def __init__(self, shards: dict[str, Any], *, batch_size: int, batches_per_epoch: int, seed: int) -> None:
        self.shards = shards
        self.batch_size = batch_size
        # Pair batches alternate with item batches and stop with them (an estimate when the
        # pair shard is smaller than the item shard).
        self.steps_per_epoch = batches_per_epoch * (2 if "pairs" in shards else 1)
        self.seed = seed

    def batches(self, epoch: int):
        for batch in self.shards["train"].iter_batches(
            batch_size=self.batch_size, batch_format="numpy",
            local_shuffle_buffer_size=4 * self.batch_size, local_shuffle_seed=self.seed + epoch,
        ):
            yield _stack(batch["embedding"])

    def pair_batches(self, epoch: int):
        if "pairs" not in self.shards:
            return
        for batch in self.shards["pairs"].iter_batches(
            batch_size=self.batch_size, batch_format="numpy",
            local_shuffle_buffer_size=4 * self.batch_size, local_shuffle_seed=self.seed + epoch,
        ):
            if len(batch["left_embedding"]) > 1:
                yield _stack(batch["left_embedding"]), _stack(batch["right_embedding"])

    def holdout_batches(self):
        for batch in self.shards["holdout"].iter_batches(batch_size=self.batch_size, batch_format="numpy"):
            yield _stack(batch["embedding"])


def _stack(column) -> np.ndarray:
    return np.ascontiguousarray(np.stack(list(column)), dtype=np.float32)


def _train_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train worker: train on this worker's shards; rank 0 reports the saved quantizer."""
    import ray.train
    import ray.train.torch
    import torch
    from torch.nn.parallel import DistributedDataParallel

    from sid.quantize import RQVAE
    from sid.quantize._rqvae_net import Collective
    from sid.quantize._rqvae_training import train_network

    torch.set_num_threads(loop_config["num_threads"])
    quantizer = RQVAE(**loop_config["settings"], show_progress=True)
    device = ray.train.torch.get_device() if loop_config["use_gpu"] else torch.device("cpu")
    net = quantizer.build_network(loop_config["dim"]).to(device)
    collective = Collective()
    model = net
    if collective.world_size > 1:
        # Items batches do not use the InfoNCE logit scales, so some parameters go unused.
        model = DistributedDataParallel(net, find_unused_parameters=True)

    shards = {name: shard for name in ("train", "holdout", "pairs") if (shard := _dataset_shard(name)) is not None}
    source = _ShardBatchSource(shards, batch_size=quantizer.batch_size,
                               batches_per_epoch=loop_config["batches_per_epoch"], seed=quantizer.seed)
    history = train_network(net, source, quantizer.training_options(show_progress=collective.rank == 0),
                            device=device, collective=collective, model=model)

    if collective.rank == 0:
        quantizer.set_state(net.export_arrays())
        quantizer.fit_stats_ = history
        with tempfile.TemporaryDirectory() as folder:
            quantizer.save(folder)
            ray.train.report(history, checkpoint=ray.train.Checkpoint.from_directory(folder))
    else:
        ray.train.report(history)


def _dataset_shard(name: str):
    """Return this worker's shard of dataset ``name``, or None when the trainer has no such dataset."""
    import ray.train

    try:
        return ray.train.get_dataset_shard(name)
    except (KeyError, ValueError):
        return None
