#!/bin/bash
# PostgreSQL of docker-compose.yaml: runs once, when the `postgres` service initialises an
# empty data volume (/docker-entrypoint-initdb.d). One role and one database each for
# Airflow's metadata and for MLflow's tracking/registry store, so neither can touch the
# other's tables. The passwords come from the container's environment (docker-compose.yaml
# interpolates them from .env); none is written here. Changing one later takes
# `ALTER ROLE ... PASSWORD` (this script does not run again on an initialised volume).
set -eo pipefail

: "${AIRFLOW_DB_PASSWORD:?AIRFLOW_DB_PASSWORD is not set}"
: "${MLFLOW_DB_PASSWORD:?MLFLOW_DB_PASSWORD is not set}"

# psql quotes :'name' variables itself, so any character in a password is safe here.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  --set airflow_password="$AIRFLOW_DB_PASSWORD" \
  --set mlflow_password="$MLFLOW_DB_PASSWORD" <<'SQL'
CREATE ROLE airflow LOGIN PASSWORD :'airflow_password';
CREATE DATABASE airflow OWNER airflow;
REVOKE ALL ON DATABASE airflow FROM PUBLIC;

CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_password';
CREATE DATABASE mlflow OWNER mlflow;
REVOKE ALL ON DATABASE mlflow FROM PUBLIC;
SQL
