# Jobs image: the pipeline package with Spark (JRE 17), Great Expectations, MLflow,
# Evidently and CPU torch. Runs `python -m jobs.<step>` in KubernetesPodOperator
# pods and as the Spark driver/executor image.
FROM python:3.11.7-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps tini \
 && rm -rf /var/lib/apt/lists/*

RUN useradd --uid 50000 --create-home pipeline
WORKDIR /opt/pipeline
ENV PIPELINE_ENV=production \
    PYTHONPATH=/opt/pipeline \
    PYTHONUNBUFFERED=1 \
    JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64 \
    PYSPARK_PYTHON=/usr/local/bin/python

COPY requirements.txt constraints.txt ./
# CPU torch from the PyTorch CPU index; the CUDA build lives in the trainer image.
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu \
      -r requirements.txt -c constraints.txt

COPY config ./config
COPY jobs ./jobs
USER pipeline
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["python", "-m", "jobs.ingest", "--help"]
