"""The model registry: register, alias, tag and read model versions through MLflow.

The same calls work against the local sqlite registry and Unity Catalog (``databricks-uc``).
Unity Catalog's search returns no tags or aliases, so versions are always read one by one.
Tag names written here are the contract the approval sensor and ``iris approve`` rely on.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from iris_assets.settings import APPROVAL_TAG, CHALLENGER_ALIAS, CHAMPION_ALIAS, Settings

APPROVED, REJECTED = "approved", "rejected"
EVALUATION_TAG = "evaluation"  # passed | failed
EVALUATION_REASON_TAG = "evaluation_reason"
APPROVED_BY_TAG, APPROVED_AT_TAG = "approved_by", "approved_at"
REJECTION_REASON_TAG = "rejection_reason"
PROMOTED_AT_TAG, PREVIOUS_CHAMPION_TAG = "promoted_at", "previous_champion"


@dataclass(frozen=True)
class VersionInfo:
    """What the pipeline needs to know about one registered model version."""

    name: str
    version: str
    tags: dict[str, str]
    aliases: tuple[str, ...]
    run_id: str | None
    source: str | None

    @property
    def approval(self) -> str | None:
        value = self.tags.get(APPROVAL_TAG)
        return value.strip().lower() if value else None

    @property
    def evaluation(self) -> str | None:
        return self.tags.get(EVALUATION_TAG)

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


class RegistryError(RuntimeError):
    """A registry operation could not be done; the message says what to do."""


def configure_mlflow(settings: Settings) -> None:
    """Point this process's MLflow at the environment's registry, through environment variables.

    MLflow's default silently creates ``./mlflow.db``, so the URI is always set, never inherited.
    Environment variables rather than ``mlflow.set_tracking_uri``: they reach child processes
    and leave no module-global state behind. Steps call this once when they open.
    """
    if not settings.is_databricks:
        settings.env_home.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = settings.tracking_uri
    os.environ["MLFLOW_REGISTRY_URI"] = settings.registry_uri


def ensure_experiment(settings: Settings) -> str:
    """The experiment training runs log to; local artifacts live under IRIS_HOME."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    experiment = client.get_experiment_by_name(settings.experiment_name)
    if experiment is not None:
        return experiment.experiment_id
    location = None if settings.is_databricks else settings.artifact_root.as_uri()
    return client.create_experiment(settings.experiment_name, artifact_location=location)


class ModelRegistry:
    """Registry operations for one registered model."""

    def __init__(self, settings: Settings):
        from mlflow import MlflowClient

        if not settings.is_databricks:
            settings.env_home.mkdir(parents=True, exist_ok=True)
        self.settings = settings
        self.name = settings.model_name
        self.client = MlflowClient(
            tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri
        )

    # --- reading -------------------------------------------------------------------------------
    def _info(self, mv: Any) -> VersionInfo:
        return VersionInfo(
            name=self.name,
            version=str(mv.version),
            tags=dict(mv.tags or {}),
            aliases=tuple(getattr(mv, "aliases", None) or ()),
            run_id=mv.run_id,
            source=mv.source,
        )

    def model_exists(self) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.name)
        except MlflowException:
            return False
        return True

    def get(self, version: str | int) -> VersionInfo:
        from mlflow.exceptions import MlflowException

        try:
            return self._info(self.client.get_model_version(self.name, str(version)))
        except MlflowException:
            raise RegistryError(f"model {self.name} has no version {version}") from None

    def by_alias(self, alias: str) -> VersionInfo | None:
        from mlflow.exceptions import MlflowException

        if not self.model_exists():
            return None
        try:
            return self._info(self.client.get_model_version_by_alias(self.name, alias))
        except MlflowException:
            return None

    def challenger(self) -> VersionInfo | None:
        return self.by_alias(CHALLENGER_ALIAS)

    def champion(self) -> VersionInfo | None:
        return self.by_alias(CHAMPION_ALIAS)

    def versions(self) -> list[VersionInfo]:
        """Every version, newest first, each read on its own (UC search returns no tags)."""
        if not self.model_exists():
            return []
        found = self.client.search_model_versions(f"name = '{self.name}'")
        numbers = sorted({int(mv.version) for mv in found}, reverse=True)
        return [self.get(n) for n in numbers]

    # --- writing -------------------------------------------------------------------------------
    def set_tags(self, version: str | int, tags: dict[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(self.name, str(version), key, str(value))

    def set_alias(self, alias: str, version: str | int) -> None:
        self.client.set_registered_model_alias(self.name, alias, str(version))

    def approve(self, version: str | int, by: str) -> VersionInfo:
        self.get(version)
        self.set_tags(
            version,
            {APPROVAL_TAG: APPROVED, APPROVED_BY_TAG: by, APPROVED_AT_TAG: utc_now_iso()},
        )
        self._delete_tag(version, REJECTION_REASON_TAG)
        return self.get(version)

    def reject(self, version: str | int, by: str, reason: str) -> VersionInfo:
        self.get(version)
        self.set_tags(
            version,
            {
                APPROVAL_TAG: REJECTED,
                APPROVED_BY_TAG: by,
                APPROVED_AT_TAG: utc_now_iso(),
                REJECTION_REASON_TAG: reason,
            },
        )
        return self.get(version)

    def _delete_tag(self, version: str | int, key: str) -> None:
        from mlflow.exceptions import MlflowException

        with contextlib.suppress(MlflowException):  # the tag was not there
            self.client.delete_model_version_tag(self.name, str(version), key)


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def promotion_blockers(version: VersionInfo) -> list[str]:
    """Why ``version`` may not become champion yet; empty when it may.

    Each reason says what to do next, because it is shown to the person trying to promote.
    """
    blockers = []
    approval = version.approval
    how = (
        f"set tag {APPROVAL_TAG}={APPROVED} on {version.name} version {version.version}, "
        f"e.g. `iris approve {version.version} --by <your name>`"
    )
    if approval is None:
        blockers.append(f"model version {version.version} is not approved: {how}")
    elif approval == REJECTED:
        reason = version.tags.get(REJECTION_REASON_TAG, "no reason given")
        who = version.tags.get(APPROVED_BY_TAG, "someone")
        blockers.append(f"model version {version.version} was rejected by {who}: {reason}")
    elif approval != APPROVED:
        blockers.append(
            f"model version {version.version} has {APPROVAL_TAG}={version.tags[APPROVAL_TAG]!r}, "
            f"which is not '{APPROVED}': {how}"
        )
    if version.evaluation != "passed":
        detail = version.tags.get(EVALUATION_REASON_TAG) or "it has not been evaluated"
        blockers.append(
            f"model version {version.version} has no passed evaluation ({detail}): "
            "materialize evaluation_report first"
        )
    return blockers
