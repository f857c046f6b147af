"""The process the fake workspace runs for a Databricks task: the step file, with /Volumes mapped.

Usage: ``python task_process.py <local volumes folder> <python file> [parameters...]``

Databricks mounts Unity Catalog volumes at ``/Volumes``, and the step's Pipes context loader and
message writer open ``/Volumes/...`` paths directly, as a step reads a training source there
(``pyarrow.parquet.read_table`` after ``Path.is_file``). Here ``open``, ``os.stat`` and pyarrow's
Parquet reader and writer map that prefix to a local folder (the same one the fake's Files API
serves), and refuse what the mount refuses: a path in no volume the workspace has
(``FileNotFoundError``) and one in a volume these credentials may not read (``PermissionError``,
EACCES), named by the environment variables ``FAKE_WORKSPACE_VOLUMES`` and
``FAKE_WORKSPACE_DENIED`` (JSON lists). Then the file runs exactly as
``python <python file> <parameters>`` would run it, as a ``spark_python_task`` runs it. The first
line of the log says which Python, venv and iris_assets the task has.
"""

import builtins
import errno
import importlib.util
import json
import os
import platform
import runpy
import sys

VOLUMES = "/Volumes"


def volume_mapper(local_root: str, volumes: list[str], denied: list[str]):
    """``/Volumes/...`` -> the local file, refusing what the platform's mount refuses."""

    def inside(path: str, volume: str) -> bool:
        return path == volume or path.startswith(volume.rstrip("/") + "/")

    def local(file):
        if not isinstance(file, str | os.PathLike):
            return file
        path = os.fspath(file)
        if not isinstance(path, str) or not (path == VOLUMES or path.startswith(VOLUMES + "/")):
            return file
        path = os.path.normpath(path)  # ``/Volumes/c/s/v/../other`` is not in volume v
        if not any(inside(path, volume) for volume in volumes):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        if any(inside(path, volume) for volume in denied):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return local_root + path[len(VOLUMES) :]

    return local


def map_volumes(local_root: str, volumes: list[str], denied: list[str]) -> None:
    import pyarrow.parquet as pq

    local = volume_mapper(local_root, volumes, denied)
    real_open, real_stat = builtins.open, os.stat
    real_read, real_write = pq.read_table, pq.write_table

    def volume_open(file, *args, **kwargs):
        return real_open(local(file), *args, **kwargs)

    def volume_stat(path, *args, **kwargs):
        return real_stat(local(path), *args, **kwargs)

    def volume_read_table(source, *args, **kwargs):
        return real_read(local(source), *args, **kwargs)

    def volume_write_table(table, where, *args, **kwargs):
        return real_write(table, local(where), *args, **kwargs)

    builtins.open = volume_open
    os.stat = volume_stat
    pq.read_table, pq.write_table = volume_read_table, volume_write_table


def main() -> None:
    local_root, python_file, *parameters = sys.argv[1:]
    # Where this task runs: the interpreter, its venv, and the iris_assets it would import.
    package = importlib.util.find_spec("iris_assets")
    origin = package.origin if package else "-"
    print("task python", platform.python_version(), sys.prefix, origin, flush=True)
    map_volumes(
        local_root,
        json.loads(os.environ.get("FAKE_WORKSPACE_VOLUMES", "[]")),
        json.loads(os.environ.get("FAKE_WORKSPACE_DENIED", "[]")),
    )
    sys.argv = [python_file, *parameters]
    sys.path[0] = os.path.dirname(python_file)
    runpy.run_path(python_file, run_name="__main__")


if __name__ == "__main__":
    main()
