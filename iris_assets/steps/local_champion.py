"""The champion for the local score step, read without importing MLflow.

A one-step run (a scheduled ``inference_table``, ``dagster asset materialize``) starts a new
warm worker, and importing MLflow with its SQLAlchemy stores was about 3.4 s of it, spent only to
read one alias and open one file. The local registry is MLflow's sqlite database: this reads
the alias, the version it names and where that version's files are in one read-only
transaction, so the version that labels the rows is the version whose files are loaded, and
loads the skops file with skops' own trusted types (no types the model's MLmodel adds).

Only for the schema revision it was checked against (``tests/steps/test_local_champion.py``
compares every answer with MLflow's client on the pinned MLflow). Anything else, a revision it
does not know, workspaces, a version not on the local file system, a model that is not a plain
skops file, answers None, and the step reads and loads through MLflow as before: its messages
(no champion yet, a missing version) stay MLflow's and the registry's.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import unquote, urlparse

from iris_assets.core.registry import VersionInfo
from iris_assets.settings import CHAMPION_ALIAS, Settings

# MLflow 3.17's registry schema (``alembic_version`` of a database it made or migrated).
KNOWN_REVISIONS = frozenset({"dc11669786a5"})
DEFAULT_WORKSPACE = "default"  # MLflow's single-tenant store reads only this workspace
DELETED_STAGE = "Deleted_Internal"  # a version MLflow keeps but no longer answers for


def read_champion(settings: Settings) -> tuple[VersionInfo, Path] | None:
    """The champion and its skops file, or None: ask MLflow (see the module docstring)."""
    if settings.is_databricks or os.environ.get("MLFLOW_WORKSPACE", "").strip():
        return None
    if not settings.mlflow_db.is_file():
        return None
    try:
        db = sqlite3.connect(
            f"{settings.mlflow_db.as_uri()}?mode=ro", uri=True, timeout=30, isolation_level=None
        )
    except sqlite3.Error:
        return None
    try:
        db.execute("BEGIN")  # one transaction: the alias, its version and its files agree
        return _read(db, settings.model_name)
    except sqlite3.Error:
        return None
    finally:
        db.close()  # closing ends the read transaction


def _read(db: sqlite3.Connection, name: str) -> tuple[VersionInfo, Path] | None:
    revisions = {row[0] for row in db.execute("SELECT version_num FROM alembic_version")}
    if len(revisions) != 1 or not revisions <= KNOWN_REVISIONS:
        return None
    found = db.execute(
        "SELECT v.version, v.run_id, v.source, v.storage_location, v.status, v.current_stage "
        "FROM registered_model_aliases a JOIN model_versions v "
        "ON v.name = a.name AND v.version = a.version AND v.workspace = a.workspace "
        # MLflow answers an alias only of a model it has (a forged row may name one it has not)
        "JOIN registered_models r ON r.name = a.name AND r.workspace = a.workspace "
        "WHERE a.name = ? AND a.alias = ? AND a.workspace = ?",
        (name, CHAMPION_ALIAS, DEFAULT_WORKSPACE),
    ).fetchall()
    if len(found) != 1:
        return None
    version, run_id, source, location, status, stage = found[0]
    if status != "READY" or stage == DELETED_STAGE:
        return None
    folder = _local_folder(location)
    model_file = skops_file(folder) if folder is not None else None
    if model_file is None:
        return None
    tags = dict(
        db.execute(
            "SELECT key, value FROM model_version_tags "
            "WHERE name = ? AND version = ? AND workspace = ?",
            (name, version, DEFAULT_WORKSPACE),
        ).fetchall()
    )
    aliases = tuple(
        row[0]
        for row in db.execute(
            "SELECT alias FROM registered_model_aliases "
            "WHERE name = ? AND version = ? AND workspace = ? ORDER BY alias",
            (name, version, DEFAULT_WORKSPACE),
        )
    )
    info = VersionInfo(
        name=name, version=str(version), tags=tags, aliases=aliases, run_id=run_id, source=source
    )
    return info, model_file


def _local_folder(location: str | None) -> Path | None:
    if not location:
        return None
    parsed = urlparse(location)
    if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
        return None
    folder = Path(unquote(parsed.path))
    return folder if folder.is_dir() else None


def skops_file(folder: Path) -> Path | None:
    """The folder's skops model file, when its MLmodel says it is one and trusts nothing more."""
    import yaml

    try:
        meta = yaml.safe_load((folder / "MLmodel").read_text())
        flavor = meta["flavors"]["sklearn"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    name = flavor.get("pickled_model") if isinstance(flavor, dict) else None
    if (
        flavor.get("serialization_format") != "skops"
        or flavor.get("skops_trusted_types")  # MLflow would trust those too: let it decide
        or flavor.get("code")
        or not isinstance(name, str)
        or Path(name).name != name
        or name in ("", ".", "..")
    ):
        return None
    path = folder / name
    return path if path.is_file() else None


def load_skops(path: Path):
    """The estimator in ``path``; skops refuses any type it does not trust by default."""
    import skops.io

    return skops.io.load(path)


class ModelFileError(RuntimeError):
    """The champion's model file cannot be loaded: damaged, truncated or changed."""


def load_champion(champion: VersionInfo, path: Path):
    """``load_skops``, failing with the version and the file named, and what a person can do."""
    try:
        return load_skops(path)
    except Exception as error:
        raise ModelFileError(
            f"champion v{champion.version} of {champion.name}: its model file {path} cannot be "
            f"loaded ({type(error).__name__}: {error}). Its artifacts were damaged or changed "
            "after it was registered; nothing was scored. Roll back to a former champion "
            "(`iris rollback --by NAME --reason TEXT`) or approve another version."
        ) from error
