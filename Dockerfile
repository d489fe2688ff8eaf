# syntax=docker/dockerfile:1
# Single-endpoint RunPod worker: parakeet-tdt-0.6b-v2 and pyannote speaker-diarization-3.1 in one
# GPU worker behind the orchestrator servicer (ORCHESTRATOR_BACKEND=inprocess).
# The same image runs the gRPC stack: `parakeet-server orchestrator --backend inprocess`.
# Models come from RunPod's cached-model store (HF_HOME below); BAKE_MODELS=true copies them in.
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04

FROM ${CUDA_IMAGE} AS build
ARG EXTRAS=asr,diarization
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Ubuntu's archive drops superseded package versions, so exact apt pins break rebuilds; the
# base image is pinned by tag and every Python package by requirements.lock.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml requirements.lock README.md ./
COPY clients/python clients/python
COPY parakeet_server parakeet_server
RUN pip install --constraint requirements.lock ./clients/python ".[${EXTRAS}]"

FROM build AS models
ARG BAKE_MODELS=false
ARG TRANSCRIPTION_MODEL=nvidia/parakeet-tdt-0.6b-v2
ARG DIARIZATION_MODELS="pyannote/speaker-diarization-3.1 pyannote/segmentation-3.0 pyannote/wespeaker-voxceleb-resnet34-LM"
ENV HF_HOME=/models
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN --mount=type=secret,id=hf_token,required=false \
    mkdir -p /models/hub \
 && if [ "${BAKE_MODELS}" = "true" ]; then \
      HF_TOKEN="$(cat /run/secrets/hf_token 2>/dev/null || true)" \
      python -c "import sys; from huggingface_hub import snapshot_download; [snapshot_download(r) for r in sys.argv[1:]]" \
        ${TRANSCRIPTION_MODEL} ${DIARIZATION_MODELS}; \
    fi

FROM ${CUDA_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 parakeet
COPY --from=build /opt/venv /opt/venv
COPY --from=models --chown=parakeet:parakeet /models /models
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HOME=/runpod-volume/huggingface-cache \
    HF_HUB_CACHE=/models/hub \
    RUNPOD_HF_CACHE=/runpod-volume/huggingface-cache/hub \
    ORCHESTRATOR_BACKEND=inprocess
WORKDIR /app
USER 10001
EXPOSE 50053
# No HEALTHCHECK: the CMD is the RunPod handler, which opens no port to probe, and RunPod checks
# its serverless workers itself; run as `parakeet-server` (compose.yaml), the gRPC port is probed there.
CMD ["python", "-m", "parakeet_server.orchestrator.handler"]
