#!/usr/bin/env bash
# One short GPU run: fit the RQ-VAE (CUDA torch) and residual k-means (faiss-gpu when
# installed, else faiss on CPU) on synthetic vectors and print fit time and encode throughput.
#
#   bash scripts/gpu_check.sh            # 200,000 x 64 vectors
#   ROWS=50000 bash scripts/gpu_check.sh
#
# Exits 2 with a message when torch finds no CUDA device.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"

if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: no CUDA device visible to torch (torch.cuda.is_available() is False); run this on a machine with an NVIDIA GPU and a CUDA build of torch" >&2
    exit 2
fi

ROWS="${ROWS:-200000}" "$PYTHON" - <<'PY'
import os
import time

import faiss
import numpy as np
import torch

from sid.quantize import RQVAE, ResidualKMeans

rows = int(os.environ["ROWS"])
rng = np.random.default_rng(0)
means = rng.normal(scale=2.0, size=(1000, 64))
vectors = (means[rng.integers(0, 1000, size=rows)] + rng.normal(size=(rows, 64))).astype(np.float32)
print(f"device={torch.cuda.get_device_name(0)} torch={torch.__version__} faiss={faiss.__version__} "
      f"faiss_gpus={faiss.get_num_gpus() if hasattr(faiss, 'get_num_gpus') else 0} rows={rows}")

started = time.perf_counter()
kmeans = ResidualKMeans(codebook_sizes=[256, 256, 256], seed=0, use_gpu=True).fit(vectors)
fit_seconds = time.perf_counter() - started
started = time.perf_counter()
kmeans.encode(vectors)
encode_seconds = time.perf_counter() - started
print(f"residual_kmeans fit_seconds={fit_seconds:.1f} reconstruction_mse={kmeans.fit_stats_['reconstruction_mse']:.4f} "
      f"encode_rows_per_second={rows / encode_seconds:.0f}")

rqvae = RQVAE(codebook_sizes=[256, 256, 256], hidden_dims=(256, 256), latent_dim=32, epochs=10, batch_size=4096,
              device="cuda", precision="bf16", seed=0, show_progress=False)
started = time.perf_counter()
rqvae.fit(vectors)
fit_seconds = time.perf_counter() - started
steps = rqvae.fit_stats_["epochs_run"] * np.ceil(0.95 * rows / 4096)
started = time.perf_counter()
rqvae.encode(vectors)
encode_seconds = time.perf_counter() - started
print(f"rqvae fit_seconds={fit_seconds:.1f} train_rows_per_second={steps * 4096 / fit_seconds:.0f} "
      f"reconstruction_mse={rqvae.fit_stats_['reconstruction_mse']:.4f} encode_rows_per_second={rows / encode_seconds:.0f}")
PY
