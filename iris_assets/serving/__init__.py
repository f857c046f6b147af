"""The local real-time model server (MLflow scoring protocol), its client and process control.

``client`` and ``process`` are stdlib-only, so the CLI and the orchestrator can use them without
importing numpy, scikit-learn or mlflow; only the server process loads those.
"""
