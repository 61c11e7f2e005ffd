# Trainer image: the pipeline package with CUDA torch, for `python -m jobs.train` in a
# KubernetesPodOperator pod that asks for nvidia.com/gpu (runner.gpu in settings). The
# CUDA runtime libraries come with the torch wheel (cu126 build); the node provides the
# driver through the NVIDIA device plugin. Without a GPU the same image trains on CPU.
FROM python:3.11.7-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps tini \
 && rm -rf /var/lib/apt/lists/*

# The user and group that pods run as (runner.pod_security in config/settings.yaml): numeric, fixed.
RUN groupadd --gid 50000 pipeline \
 && useradd --uid 50000 --gid 50000 --create-home pipeline
WORKDIR /opt/pipeline
ENV PIPELINE_ENV=production \
    PYTHONUNBUFFERED=1 \
    JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64 \
    PYSPARK_PYTHON=/usr/local/bin/python \
    # Deterministic cuBLAS (jobs/model/training.py seeds and asks torch for deterministic kernels).
    CUBLAS_WORKSPACE_CONFIG=:4096:8

COPY requirements.txt constraints.txt ./
# The same pins as every image, except torch's local version: constraints.txt holds the CPU
# build (2.13.0+cpu); here the CUDA 12.6 build of the same 2.13.0.
RUN sed 's/^torch==2\.13\.0+cpu$/torch==2.13.0+cu126/' constraints.txt > /tmp/constraints-cuda.txt \
 && grep -qx 'torch==2.13.0+cu126' /tmp/constraints-cuda.txt \
 && pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cu126 \
      -r requirements.txt -c /tmp/constraints-cuda.txt

COPY pyproject.toml README.md ./
COPY config ./config
COPY jobs ./jobs
# The pipeline package, editable in place (it reads config/ beside it); its dependencies are the pins above.
RUN pip install --no-cache-dir --no-deps --no-build-isolation -e .
USER 50000
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["python", "-m", "jobs.train", "--help"]
