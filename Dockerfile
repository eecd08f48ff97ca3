# ALTO Lab for a GPU server: the dashboard (with its supervisor) on port 8501, the database on a volume.
#   docker build -t alto-lab .
#   docker run --gpus all -p 8501:8501 -v alto-data:/data alto-lab
#   docker run --gpus all --rm alto-lab python -m alto.gpu_check    # first thing on a new GPU machine
# Bound to 0.0.0.0 it needs a token: `docker logs` shows the link with a generated one, or pass
# -e ALTO_TOKEN=... (editor) and -e ALTO_VIEWER_TOKEN=... (read-only) to choose them.
# torch 2.9.1 ships Triton 3.5, which compiles the fused ALTO/Lamb kernels (alto/optim/fused.py).
FROM pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    ALTO_DB=/data/alto.db

# Triton builds a small C launcher for every kernel at first use, and ALTO/Lamb compile their CPU
# loop (alto/optim/cpu_kernel.py); the runtime image has no C compiler.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/alto-lab
COPY pyproject.toml setup.py README.md ./
COPY alto ./alto
COPY app ./app
COPY runs/presets ./runs/presets
# The base image's torch (2.9.1, CUDA 12.8) satisfies the project's range, so pip keeps it.
RUN pip install --no-cache-dir -e . \
    && useradd --create-home --uid 1000 alto \
    && mkdir -p /data \
    && chown alto /data

USER 1000
VOLUME ["/data"]
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4).status != 200)"]
CMD ["alto", "app", "--host", "0.0.0.0", "--port", "8501", "--db", "/data/alto.db"]
