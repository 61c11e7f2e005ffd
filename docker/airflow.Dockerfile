# Airflow image: scheduler, dag-processor, triggerer, api-server and workers.
# DAGs only wire; heavy steps run in the jobs/trainer images (runner.kind: kubernetes),
# so this image carries Airflow, the providers and the light pipeline package.
FROM apache/airflow:3.3.2-python3.11

ENV PIPELINE_ENV=production \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/pipeline/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/pipeline/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False

USER 0
# The package's editable install writes its metadata beside it: the folder is the airflow user's.
RUN install -d -o airflow -g root /opt/pipeline
COPY --chown=airflow:root requirements.txt constraints.txt /opt/pipeline/
USER 50000
# Same pins as the laptop: the provider versions here are the ones the tests ran. The plugin's pages
# (model health, lineage, MLflow links) read the registry (mlflow-skinny) and draw charts (matplotlib);
# the retraining policy of scheduled training runs reads the registry too.
RUN pip install --no-cache-dir -c /opt/pipeline/constraints.txt \
      apache-airflow==3.3.2 \
      apache-airflow-providers-cncf-kubernetes==10.25.0 \
      apache-airflow-providers-standard==1.21.0 \
      apache-airflow-providers-openlineage==2.20.3 \
      pydantic==2.14.4 pydantic-settings==2.16.3 PyYAML==6.0.4 boto3==1.44.8 psycopg2-binary==2.9.13 setuptools==80.10.2 \
      mlflow-skinny==3.17.2 matplotlib==3.11.2

COPY --chown=airflow:root config /opt/pipeline/config
COPY --chown=airflow:root pyproject.toml README.md /opt/pipeline/
COPY --chown=airflow:root jobs /opt/pipeline/jobs
COPY --chown=airflow:root dags /opt/pipeline/dags
COPY --chown=airflow:root plugins /opt/pipeline/plugins
WORKDIR /opt/pipeline
# The pipeline package (the DAGs import it), editable in place: it reads config/ beside it.
RUN pip install --no-cache-dir --no-deps --no-build-isolation -e /opt/pipeline
