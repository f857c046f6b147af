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

APPROVED, REJECTED, ROLLED_BACK = "approved", "rejected", "rolled_back"
EVALUATION_TAG = "evaluation"  # passed | failed: a summary for people, never trusted
EVALUATION_REASON_TAG = "evaluation_reason"
EVALUATION_RUN_TAG = "evaluation_run_id"  # the evaluation record (core/evidence.py)
APPROVED_BY_TAG, APPROVED_AT_TAG = "approved_by", "approved_at"
# The evaluation record an approval was given on, and when that binding was made.
APPROVAL_RUN_TAG, APPROVAL_BOUND_AT_TAG = "approval_evaluation_run_id", "approval_bound_at"
REJECTION_REASON_TAG = "rejection_reason"
RETRAIN_REASON_TAG = "retrain_reason"  # why a retrain asked for the version (train step)
TRAINED_BY_TAG = "trained_by"
PROMOTED_AT_TAG, PREVIOUS_CHAMPION_TAG = "promoted_at", "previous_champion"
CHAMPION_SINCE_TAG = "champion_since"  # set each time the version becomes champion
ROLLED_BACK_TAGS = ("rolled_back_at", "rolled_back_by", "rolled_back_reason", "rolled_back_to")
REINSTATED_TAGS = ("reinstated_at", "reinstated_by", "reinstated_reason", "reinstated_from")


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


def no_registry_yet(settings: Settings) -> bool:
    """A local home whose registry has not been made yet: nothing is registered in it. Who only
    reads asks this first, because opening the registry would make and migrate an empty
    database (about 2 CPU s with MLflow's import, in every fresh home's code server)."""
    return not settings.is_databricks and not settings.mlflow_db.exists()


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

        # One query: a model that does not exist has no alias either (the same MlflowException).
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

    def experiment_id(self) -> str | None:
        """The environment's experiment, where evaluation records live (None before training)."""
        experiment = self.client.get_experiment_by_name(self.settings.experiment_name)
        return experiment.experiment_id if experiment is not None else None

    def delete_tags(self, version: str | int, keys: tuple[str, ...] | list[str]) -> None:
        from mlflow.exceptions import MlflowException

        for key in keys:
            with contextlib.suppress(MlflowException):  # the tag was not there
                self.client.delete_model_version_tag(self.name, str(version), key)

    def approve(self, version: str | int, by: str, separate_duties: bool = False) -> VersionInfo:
        """Approve the challenger for its current evaluation record (the binding is written here).

        Refused, with what to do, for a version that is not the challenger, has no evaluation
        record yet, or (with separation of duties on) was trained by ``by``.
        """
        target = self.get(version)
        by = by.strip()
        if not by:
            raise RegistryError("say who approves: --by NAME")
        challenger = self.challenger()
        if challenger is None or challenger.version != target.version:
            now = f"the challenger is version {challenger.version}" if challenger else "none is"
            raise RegistryError(
                f"version {target.version} is not the challenger ({now}): only the challenger is "
                f"promoted. To go back to a former champion: `iris rollback --to {target.version} "
                "--by NAME --reason TEXT`"
            )
        record = target.tags.get(EVALUATION_RUN_TAG)
        if not record:
            raise RegistryError(
                f"version {target.version} has no evaluation record yet: materialize "
                "evaluation_report, look at its report, then approve"
            )
        trainer = target.tags.get(TRAINED_BY_TAG, "").strip()
        if separate_duties and not trainer:
            raise RegistryError(unknown_trainer_message(target.version))
        if separate_duties and trainer.lower() == by.strip().lower():
            raise RegistryError(duties_message(target.version, trainer))
        self.set_tags(
            version,
            {
                APPROVAL_TAG: APPROVED,
                APPROVED_BY_TAG: by,
                APPROVED_AT_TAG: utc_now_iso(),
                APPROVAL_RUN_TAG: record,
                APPROVAL_BOUND_AT_TAG: utc_now_stamp(),
            },
        )
        self.delete_tags(version, [REJECTION_REASON_TAG])
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
        self.delete_tags(version, [APPROVAL_RUN_TAG, APPROVAL_BOUND_AT_TAG])
        return self.get(version)

    def bind_approval(self, version: VersionInfo, record_run_id: str) -> VersionInfo:
        """Bind an approval set without one (Catalog Explorer, a bare MlflowClient) to the record
        the pipeline sees it with for the first time."""
        if version.tags.get(APPROVAL_RUN_TAG):
            return version
        self.set_tags(
            version.version,
            {APPROVAL_RUN_TAG: record_run_id, APPROVAL_BOUND_AT_TAG: utc_now_stamp()},
        )
        return self.get(version.version)

    # --- going back ----------------------------------------------------------------------------
    def rollback_target(
        self, to: str | None = None, former: set[str] | None = None
    ) -> tuple[VersionInfo, VersionInfo]:
        """(current champion, the former champion to go back to); RegistryError saying why not.

        Without ``to``, the ``previous_champion`` chain is followed past rejected versions.
        ``former``: the versions the orchestrator's own history shows as champion; tags can be
        set by anyone who can tag, so when it is given a tag alone does not make a former champion.
        """
        champion = self.champion()
        if champion is None:
            raise RegistryError(f"{self.name} has no champion: there is nothing to roll back")
        if to:
            target = self.get(to)
            if target.version == champion.version:
                raise RegistryError(f"version {target.version} is already the champion")
            if PROMOTED_AT_TAG not in target.tags or (
                former is not None and champion_key(target.version, target.run_id) not in former
            ):
                raise RegistryError(
                    f"version {target.version} was never champion: rollback only restores a "
                    "former champion; a new version is promoted by approving the challenger"
                )
            if target.approval == REJECTED:
                raise RegistryError(
                    f"version {target.version} was rejected "
                    f"({target.tags.get(REJECTION_REASON_TAG, 'no reason given')}): choose "
                    "another --to"
                )
            return champion, target
        seen = {champion.version}
        previous = champion.tags.get(PREVIOUS_CHAMPION_TAG, "none")
        while previous not in ("", "none") and previous not in seen:
            seen.add(previous)
            candidate = self.get(previous)
            was_champion = former is None or (
                champion_key(candidate.version, candidate.run_id) in former
            )
            if candidate.approval != REJECTED and was_champion:
                return champion, candidate
            previous = candidate.tags.get(PREVIOUS_CHAMPION_TAG, "none")
        raise RegistryError(
            f"champion version {champion.version} has no earlier champion to roll back to: "
            "train, evaluate and approve a new challenger (`iris approve N --by NAME`)"
        )

    def rollback(
        self, to: str | None, by: str, reason: str, former: set[str] | None = None
    ) -> tuple[VersionInfo, VersionInfo]:
        """Move ``champion`` back to a former champion; record who, why, when and from where.

        The version rolled back from loses its approval (``approval=rolled_back`` unless it was
        rejected), so the approval sensor promotes it again only after a new approval.
        """
        if not by.strip() or not reason.strip():
            raise RegistryError("a rollback needs --by NAME and --reason TEXT")
        old, target = self.rollback_target(to, former)
        now = utc_now_stamp()
        self.set_alias(CHAMPION_ALIAS, target.version)
        self.set_tags(
            target.version,
            dict(zip(REINSTATED_TAGS, (now, by, reason, old.version), strict=True))
            | {CHAMPION_SINCE_TAG: now},
        )
        old_tags = dict(zip(ROLLED_BACK_TAGS, (now, by, reason, target.version), strict=True))
        if old.approval != REJECTED:
            old_tags[APPROVAL_TAG] = ROLLED_BACK
        self.set_tags(old.version, old_tags)
        self.delete_tags(old.version, [APPROVAL_RUN_TAG, APPROVAL_BOUND_AT_TAG])
        return self.get(old.version), self.get(target.version)


def duties_message(version: str, trainer: str) -> str:
    return (
        f"version {version} was trained by {trainer!r}, who may not also approve it: separation "
        "of duties is on (IRIS_SEPARATE_DUTIES, default on in prod); someone else must approve"
    )


def unknown_trainer_message(version: str) -> str:
    return (
        f"version {version} has no {TRAINED_BY_TAG} tag, so separation of duties (on: "
        "IRIS_SEPARATE_DUTIES, default on in prod) cannot tell that its approver did not train "
        "it: train the challenger through the pipeline (challenger_model records who trained it)"
    )


def champion_key(version: str, run_id: str | None) -> str:
    """A version as the champion history names it: its number and its training run."""
    return f"{version}@{run_id or ''}"


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def utc_now_stamp() -> str:
    """A timestamp precise enough to tell two approvals or promotions apart (run keys use it)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")
