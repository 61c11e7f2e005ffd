"""DAG-side helpers: settings access, default args, assets, sensors and the one step factory.

Everything here is imported at DAG parse time: keep it light (no pandas, pyspark,
mlflow, torch, great_expectations, evidently, sklearn at module level).
"""
