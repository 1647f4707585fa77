# hpo-queue images. `cpu`: API, coordinator, Flower and CPU workers (CPU build of torch).
# `cuda`: GPU workers (CUDA build of torch), run with the NVIDIA Container Toolkit:
#   docker build --target cuda -t hpo-queue:cuda .
#   docker run --gpus all -e HPO_BROKER_URL=redis://broker-host:6379/0 hpo-queue:cuda
FROM python:3.11-slim AS base
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 HPO_HOME=/data/hpo
WORKDIR /opt/hpo
COPY pyproject.toml README.md ./
COPY app ./app
COPY workers ./workers

FROM base AS cpu
# torch first, from the CPU index: an unpinned torch from PyPI pulls several GB of CUDA wheels.
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" \
 && pip install ".[worker]"
COPY examples ./examples
RUN useradd --create-home hpo && mkdir -p /data/hpo && chown hpo /data/hpo
USER hpo
CMD ["hpo", "--help"]

FROM base AS cuda
# PyPI's Linux torch wheel is the CUDA build and brings the CUDA runtime with it (nvidia-* wheels),
# so the slim Python base is enough: the container toolkit mounts the driver and nvidia-smi (which
# `hpo worker` uses to find the GPUs and to see memory still held after a trial). Another CUDA
# version: --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 (or cu128, ...).
ARG TORCH_INDEX_URL=https://pypi.org/simple
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    CUDA_DEVICE_ORDER=PCI_BUS_ID
# CUDA_DEVICE_ORDER: CUDA numbers the GPUs as nvidia-smi does, so the ids a worker pins trials to
# with CUDA_VISIBLE_DEVICES are the GPUs it detected.
RUN pip install --index-url "$TORCH_INDEX_URL" "torch==2.13.0" \
 && pip install ".[worker]"
COPY examples ./examples
RUN useradd --create-home hpo && mkdir -p /data/hpo && chown hpo /data/hpo
USER hpo
CMD ["hpo", "worker"]
