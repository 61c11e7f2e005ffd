"""Spark's Python workers fork from jobs.spark_worker's daemon: the scoring libraries are in memory before a UDF runs."""

from jobs.spark import WORKER_CONF
from jobs.spark_worker import PRELOAD, preload


def test_sessions_use_the_preloading_daemon(spark):
    assert spark.conf.get("spark.python.daemon.module") == WORKER_CONF["spark.python.daemon.module"]


def test_a_udf_worker_starts_with_the_libraries_imported(spark):
    import pandas as pd
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("string")
    def imported(values: pd.Series) -> pd.Series:
        import sys

        # What the worker had before this UDF imported anything beyond pandas itself.
        return values.map(lambda _: ",".join(name for name in PRELOAD if name in sys.modules))

    rows = spark.range(4, numPartitions=2).select(imported("id").alias("preloaded")).collect()
    assert {row.preloaded for row in rows} == {",".join(PRELOAD)}


def test_a_library_the_image_lacks_is_skipped_not_fatal():
    assert preload(("json", "no_such_library_here")) == ["no_such_library_here"]
