"""Pipes-side entry points: the heavy work of each asset, run as `python -m iris_assets.steps.X`.

Steps import ``dagster_pipes``, never ``dagster``: the same files run in a local subprocess and as
a Databricks serverless task.
"""
