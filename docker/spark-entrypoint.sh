#!/bin/bash
# Entrypoint of the jobs image. Three ways it is started:
#   driver ARGS    by Spark on Kubernetes for a SparkApplication's driver pod: spark-submit in
#                  client mode inside the pod (the Spark operator submitted it in cluster mode);
#   executor       by the driver for each executor pod: the executor backend, told where the
#                  driver is through SPARK_* variables that Spark sets on the pod;
#   anything else  run as given (KubernetesPodOperator steps: python -m jobs.<step> ...).
# Spark comes from the pip-installed pyspark (SPARK_HOME is its package directory), with the
# s3a jars the Dockerfile adds to its jars/.
set -euo pipefail

SPARK_HOME="${SPARK_HOME:-$(python -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')}"
export SPARK_HOME
classpath="${SPARK_HOME}/jars/*"

case "${1:-}" in
  driver)
    shift
    exec /usr/bin/tini -s -- "${SPARK_HOME}/bin/spark-submit" \
      --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS}" \
      --deploy-mode client "$@"
    ;;
  executor)
    shift
    # JVM options Spark passes to executors arrive as SPARK_JAVA_OPT_<n> variables, in order.
    mapfile -t java_opts < <(env | grep '^SPARK_JAVA_OPT_' | sort -t_ -k4 -n | cut -d= -f2-)
    exec /usr/bin/tini -s -- "${JAVA_HOME}/bin/java" "${java_opts[@]}" \
      "-Xms${SPARK_EXECUTOR_MEMORY}" "-Xmx${SPARK_EXECUTOR_MEMORY}" -cp "${classpath}" \
      org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
      --driver-url "${SPARK_DRIVER_URL}" --executor-id "${SPARK_EXECUTOR_ID}" \
      --cores "${SPARK_EXECUTOR_CORES}" --app-id "${SPARK_APPLICATION_ID}" \
      --hostname "${SPARK_EXECUTOR_POD_IP}" --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID}" \
      --podName "${SPARK_EXECUTOR_POD_NAME}"
    ;;
  *)
    exec /usr/bin/tini -s -- "$@"
    ;;
esac
