"""The process the fake workspace runs for a Databricks task: the step file, with /Volumes mapped.

Usage: ``python task_process.py <local volumes folder> <python file> [parameters...]``

Databricks mounts Unity Catalog volumes at ``/Volumes``, and the step's Pipes context loader and
message writer open ``/Volumes/...`` paths directly. Here ``open`` maps that prefix to a local
folder (the same one the fake's Files API serves); then the file runs exactly as
``python <python file> <parameters>`` would run it, as a ``spark_python_task`` runs it. The first
line of the log says which Python, venv and iris_assets the task has.
"""

import builtins
import importlib.util
import os
import platform
import runpy
import sys

VOLUMES = "/Volumes"


def map_volumes(local_root: str) -> None:
    real_open = builtins.open

    def volume_open(file, *args, **kwargs):
        if isinstance(file, str | os.PathLike):
            path = os.fspath(file)
            if path == VOLUMES or path.startswith(VOLUMES + "/"):
                file = local_root + path[len(VOLUMES) :]
        return real_open(file, *args, **kwargs)

    builtins.open = volume_open


def main() -> None:
    local_root, python_file, *parameters = sys.argv[1:]
    # Where this task runs: the interpreter, its venv, and the iris_assets it would import.
    package = importlib.util.find_spec("iris_assets")
    origin = package.origin if package else "-"
    print("task python", platform.python_version(), sys.prefix, origin, flush=True)
    map_volumes(local_root)
    sys.argv = [python_file, *parameters]
    sys.path[0] = os.path.dirname(python_file)
    runpy.run_path(python_file, run_name="__main__")


if __name__ == "__main__":
    main()
