"""Settings: the environment turned into names and paths.

Every table, model, alias, endpoint, volume and local folder name is derived here and only here,
so the local target, the Databricks target and `databricks.yml` agree on one name for one thing.
This module is imported by the orchestrator and by Pipes steps: it must stay dependency-free.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENVS = ("dev", "prod")
TARGETS = ("local", "databricks")

CHALLENGER_ALIAS = "challenger"
CHAMPION_ALIAS = "champion"
APPROVAL_TAG = "approval"
DEFAULT_SERVING_PORT = {"dev": 5115, "prod": 5116}
# `iris mlflow`'s port and the one Dagster's metadata links point at (IRIS_MLFLOW_PORT moves both).
MLFLOW_UI_PORT = {"dev": 5125, "prod": 5126}

# The environment variables a Pipes step needs to rebuild the same Settings on its side.
SETTINGS_ENV_VARS = (
    "IRIS_ENV",
    "IRIS_TARGET",
    "IRIS_HOME",
    "IRIS_CATALOG",
    "IRIS_SCHEMA",
    "IRIS_SERVING_HOST",
    "IRIS_SERVING_PORT",
    "IRIS_MLFLOW_PORT",
)


class SettingsError(ValueError):
    """A setting in the environment has a value this project cannot use."""


PIPES_VOLUME = "pipes"
LANDING_VOLUME = "landing"
UC_NAME_MAX = 255


def check_uc_name(variable: str, value: str) -> str:
    """``value`` when it is a Unity Catalog object name, else a ``SettingsError`` naming
    ``variable``.

    The catalog and schema are joined into ``catalog.schema.table`` and into
    ``/Volumes/<catalog>/<schema>/<volume>/...`` (and local warehouse folders): a ``.``, ``/``
    or space would name another object or leave the volume (``..``). Unity Catalog refuses them
    too (periods, spaces, forward slashes, ASCII control characters and DEL), and names longer
    than 255 characters. An apostrophe Unity Catalog would take (quoted) is refused here: the
    model name is a value in MLflow search filters (``core.evidence``), whose grammar has no
    escape for a quote inside a quoted string.

    An upper-case letter is refused too, not lowered: Unity Catalog stores every object name in
    lower case (https://docs.databricks.com/sql/language-manual/sql-ref-names.html), so
    ``Main.Iris.iris_model`` would be created as ``main.iris.iris_model`` while this project's
    MLflow search filters, volume paths and run tags kept the spelling given; lowering it here
    would leave ``databricks.yml``'s variables and every other tool the user points at the
    catalog with a name that differs from the one the pipeline prints. One spelling, lower case,
    on both targets (a local home named with capitals would break when deployed)."""
    bad = sorted({c for c in value if c in "./ '" or ord(c) < 0x20 or ord(c) == 0x7F})
    upper = sorted({c for c in value if c != c.lower()})
    if value and len(value) <= UC_NAME_MAX and not bad and not upper:
        return value
    why = (
        "is empty"
        if not value
        else f"is longer than {UC_NAME_MAX} characters"
        if len(value) > UC_NAME_MAX
        else "holds " + ", ".join(repr(c) for c in bad)
        if bad
        else f"holds upper-case {', '.join(repr(c) for c in upper)}, which Unity Catalog "
        f"stores in lower case (use {value.lower()!r})"
    )
    raise SettingsError(
        f"{variable}={value!r} is not a Unity Catalog name: it {why}. Use lower-case letters, "
        "digits and underscores (e.g. iris_dev, ml); it names catalog.schema.table and "
        "/Volumes/<catalog>/<schema>/... paths, where '.', '/' and spaces are not allowed and "
        "names are stored in lower case, and MLflow search filters, which cannot escape an "
        "apostrophe (')"
    )


@dataclass(frozen=True)
class Settings:
    env: str
    target: str
    home: Path
    catalog: str
    schema: str
    serving_host: str
    serving_port: int
    mlflow_ui_port: int = 0  # 0: this env's default in MLFLOW_UI_PORT

    def __post_init__(self):
        # Checked however Settings is made (load_settings, SettingsResource, a replace()).
        check_uc_name("IRIS_CATALOG", self.catalog)
        check_uc_name("IRIS_SCHEMA", self.schema)

    # --- Unity Catalog style three-level names -------------------------------------------------
    def table_name(self, table: str) -> str:
        return f"{self.catalog}.{self.schema}.{table}"

    @property
    def feature_table(self) -> str:
        return self.table_name("iris_features")

    @property
    def landing_table(self) -> str:
        return self.table_name("new_flowers")

    @property
    def inference_table(self) -> str:
        return self.table_name("iris_inferences")

    @property
    def rejects_table(self) -> str:
        return self.table_name("iris_rejects")

    @property
    def labels_table(self) -> str:
        """The landing of ``flower_labels``: species learned later for flowers already scored."""
        return self.table_name("flower_labels")

    @property
    def performance_table(self) -> str:
        """``model_performance``: live accuracy per observed day and model version."""
        return self.table_name("iris_model_performance")

    @property
    def serving_log_table(self) -> str:
        """``iris_serving_log``: a row per request the endpoint scored (as AI Gateway logs)."""
        return self.table_name("iris_serving_log")

    @property
    def model_name(self) -> str:
        return self.table_name("iris_model")

    @property
    def endpoint_name(self) -> str:
        return f"iris-{self.env}"

    @property
    def experiment_name(self) -> str:
        return f"/Shared/iris-assets-{self.env}" if self.is_databricks else f"iris-{self.env}"

    @property
    def pipes_volume(self) -> str:
        return f"/Volumes/{self.catalog}/{self.schema}/{PIPES_VOLUME}"

    @property
    def landing_volume(self) -> str:
        return f"/Volumes/{self.catalog}/{self.schema}/{LANDING_VOLUME}"

    @property
    def is_databricks(self) -> bool:
        return self.target == "databricks"

    # --- local state under IRIS_HOME/<env> -----------------------------------------------------
    @property
    def env_home(self) -> Path:
        return self.home / self.env

    @property
    def warehouse(self) -> Path:
        return self.env_home / "warehouse"

    def table_path(self, full_name: str) -> Path:
        """Where a local Delta table lives: warehouse/<catalog>/<schema>/<table>."""
        return self.warehouse.joinpath(*full_name.split("."))

    @property
    def landing_dir(self) -> Path:
        """The landing area of ``new_flowers``: one folder per observed day of batch files.

        On Databricks it is the landing volume, which steps see as an ordinary folder.
        """
        if self.is_databricks:
            return Path(self.landing_volume) / "new_flowers"
        return self.env_home / "landing" / "new_flowers"

    @property
    def labels_landing_dir(self) -> Path:
        """The landing area of ``flower_labels``: the same day folders and batch-file rules."""
        if self.is_databricks:
            return Path(self.landing_volume) / "flower_labels"
        return self.env_home / "landing" / "flower_labels"

    @property
    def mlflow_db(self) -> Path:
        return self.env_home / "mlflow.db"

    @property
    def tracking_uri(self) -> str:
        return "databricks" if self.is_databricks else f"sqlite:///{self.mlflow_db}"

    @property
    def registry_uri(self) -> str:
        return "databricks-uc" if self.is_databricks else self.tracking_uri

    @property
    def artifact_root(self) -> Path:
        return self.env_home / "mlartifacts"

    @property
    def mlflow_ui_url(self) -> str:
        """The local MLflow UI (``iris mlflow``) over this env's registry and artifacts."""
        return f"http://127.0.0.1:{self.mlflow_ui_port or MLFLOW_UI_PORT[self.env]}"

    @property
    def serving_dir(self) -> Path:
        return self.env_home / "serving"

    @property
    def serving_url(self) -> str:
        return f"http://{self.serving_host}:{self.serving_port}"

    @property
    def dagster_home(self) -> Path:
        return self.env_home / "dagster"

    def step_env(self) -> dict[str, str]:
        """Environment for a Pipes step so that it derives exactly these settings."""
        return {
            "IRIS_ENV": self.env,
            "IRIS_TARGET": self.target,
            "IRIS_HOME": str(self.home),
            "IRIS_CATALOG": self.catalog,
            "IRIS_SCHEMA": self.schema,
            "IRIS_SERVING_HOST": self.serving_host,
            "IRIS_SERVING_PORT": str(self.serving_port),
            "IRIS_MLFLOW_PORT": str(self.mlflow_ui_port or MLFLOW_UI_PORT[self.env]),
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "MLFLOW_REGISTRY_URI": self.registry_uri,
        }


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from environment variables (``os.environ`` by default)."""
    environ = os.environ if environ is None else environ
    # On Dagster+ the deployment (dev or prod) decides when IRIS_ENV is not set, so a prod
    # deployment that forgot IRIS_ENV never writes to the dev catalog.
    deployment = environ.get("DAGSTER_CLOUD_DEPLOYMENT_NAME", "").strip().lower()
    default_env = deployment if deployment in ENVS else "dev"
    env = (environ.get("IRIS_ENV") or default_env).strip().lower()
    if env not in ENVS:
        raise SettingsError(f"IRIS_ENV={env!r} is not one of {', '.join(ENVS)}")
    target = environ.get("IRIS_TARGET", "local").strip().lower()
    if target not in TARGETS:
        raise SettingsError(f"IRIS_TARGET={target!r} is not one of {', '.join(TARGETS)}")
    port_text = environ.get("IRIS_SERVING_PORT", str(DEFAULT_SERVING_PORT[env]))
    try:
        port = int(port_text)
    except ValueError:
        raise SettingsError(f"IRIS_SERVING_PORT={port_text!r} is not a port number") from None
    mlflow_text = environ.get("IRIS_MLFLOW_PORT", str(MLFLOW_UI_PORT[env]))
    try:
        mlflow_port = int(mlflow_text)
    except ValueError:
        mlflow_port = -1
    if not 0 < mlflow_port < 65536:
        raise SettingsError(f"IRIS_MLFLOW_PORT={mlflow_text!r} is not a port number")
    return Settings(
        env=env,
        target=target,
        home=Path(environ.get("IRIS_HOME", ".iris")).expanduser().resolve(),
        catalog=environ.get("IRIS_CATALOG", f"iris_{env}"),
        schema=environ.get("IRIS_SCHEMA", "ml"),
        serving_host=environ.get("IRIS_SERVING_HOST", "127.0.0.1"),
        serving_port=port,
        mlflow_ui_port=mlflow_port,
    )


def separate_duties(settings: Settings, environ: Mapping[str, str] | None = None) -> bool:
    """Whether the identity that trained a version may not approve it (IRIS_SEPARATE_DUTIES).

    Default on in prod, off in dev.
    """
    environ = os.environ if environ is None else environ
    text = environ.get("IRIS_SEPARATE_DUTIES", "").strip().lower()
    if not text:
        return settings.env == "prod"
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"IRIS_SEPARATE_DUTIES={text!r} is not one of on, off, true, false, 1, 0")


def acting_identity(
    run_tags: Mapping[str, str] | None = None, environ: Mapping[str, str] | None = None
) -> str:
    """Who is acting: the Dagster run's user, else IRIS_USER, a Databricks service principal or the
    login name. Recorded as ``trained_by`` so separation of duties can compare it."""
    environ = os.environ if environ is None else environ
    for key in ("dagster/user", "user"):
        if run_tags and run_tags.get(key):
            return run_tags[key]
    if environ.get("IRIS_USER"):
        return environ["IRIS_USER"]
    if environ.get("DATABRICKS_CLIENT_ID"):
        return f"service-principal:{environ['DATABRICKS_CLIENT_ID']}"
    return environ.get("USER") or environ.get("USERNAME") or "unknown"
