"""iris-assets: the Iris classifier operated as a Dagster asset graph, locally or on Databricks."""
