# Jobs image: the pipeline package with Spark (JRE 17), Great Expectations, MLflow,
# Evidently and CPU torch. Runs `python -m jobs.<step>` in KubernetesPodOperator
# pods, and is the driver and executor image of the Spark steps' SparkApplications
# (docker/spark-entrypoint.sh starts either role).
FROM python:3.11.7-slim-bookworm

# s3a for Spark: hadoop-aws matching the Hadoop client jars pyspark 4.3.0 ships (3.5.0), and
# the AWS SDK v2 bundle it is built against. Bump them together with pyspark.
ARG HADOOP_AWS_VERSION=3.5.0
ARG AWS_SDK_BUNDLE_VERSION=2.35.4

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
    PYSPARK_PYTHON=/usr/local/bin/python

COPY requirements.txt constraints.txt ./
# CPU torch from the PyTorch CPU index; the CUDA build lives in the trainer image.
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu \
      -r requirements.txt -c constraints.txt

RUN jars="$(python -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')/jars" \
 && maven=https://repo1.maven.org/maven2 \
 && python -c "import sys, urllib.request as u; [u.urlretrieve(url, f'$jars/' + url.rsplit('/', 1)[1]) for url in sys.argv[1:]]" \
      "$maven/org/apache/hadoop/hadoop-aws/${HADOOP_AWS_VERSION}/hadoop-aws-${HADOOP_AWS_VERSION}.jar" \
      "$maven/software/amazon/awssdk/bundle/${AWS_SDK_BUNDLE_VERSION}/bundle-${AWS_SDK_BUNDLE_VERSION}.jar"

COPY docker/spark-entrypoint.sh /opt/spark-entrypoint.sh
COPY pyproject.toml README.md ./
COPY config ./config
COPY jobs ./jobs
# The pipeline package, editable in place (it reads config/ beside it); its dependencies are the pins above.
RUN pip install --no-cache-dir --no-deps --no-build-isolation -e .
USER 50000
ENTRYPOINT ["/opt/spark-entrypoint.sh"]
CMD ["python", "-m", "jobs.ingest", "--help"]
