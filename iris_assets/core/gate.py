"""The promotion gate: whether the challenger may become champion now, and if not, why.

Used by ``champion_alias`` and ``champion_approval_sensor`` alike, so a version the sensor would
not request cannot be promoted by hand either. The verdict comes from the evaluation record
(``core/evidence.py``), never from the version's ``evaluation`` tag; an approval counts only for
the record it is bound to (``approval_evaluation_run_id``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from iris_assets.core.evidence import EvaluationRecord, RecordError, latest_record_id, read_record
from iris_assets.core.registry import (
    APPROVAL_RUN_TAG,
    APPROVED,
    APPROVED_BY_TAG,
    EVALUATION_RUN_TAG,
    EVALUATION_TAG,
    REJECTED,
    REJECTION_REASON_TAG,
    ROLLED_BACK,
    TRAINED_BY_TAG,
    ModelRegistry,
    VersionInfo,
    duties_message,
    unknown_trainer_message,
)
from iris_assets.settings import APPROVAL_TAG

NOT_APPROVED = "not_approved"  # the only blocker that means "waiting for a person", not "wrong"


@dataclass(frozen=True)
class Blocker:
    code: str  # not_approved | approval | evidence | stale | duties
    message: str


@dataclass(frozen=True)
class GateDecision:
    candidate: VersionInfo
    record: EvaluationRecord | None
    blockers: list[Blocker] = field(default_factory=list)

    @property
    def may_promote(self) -> bool:
        return not self.blockers

    @property
    def waiting_for_approval(self) -> bool:
        return bool(self.blockers) and all(b.code == NOT_APPROVED for b in self.blockers)

    @property
    def reason(self) -> str:
        return "; ".join(b.message for b in self.blockers)


def how_to_approve(version: VersionInfo) -> str:
    return (
        f"set tag {APPROVAL_TAG}={APPROVED} on {version.name} version {version.version}, "
        f"e.g. `iris approve {version.version} --by <your name>`"
    )


def check_evidence(
    models: ModelRegistry,
    candidate: VersionInfo,
    champion: VersionInfo | None,
    feature_table_version: str | None,
) -> tuple[EvaluationRecord | None, list[Blocker]]:
    """The candidate's evaluation record and what is wrong with it (missing, failed, stale)."""
    v = candidate.version
    rerun = "materialize evaluation_report (or run training_job)"
    run_id = candidate.tags.get(EVALUATION_RUN_TAG)
    if not run_id:
        tag = candidate.tags.get(EVALUATION_TAG)
        forged = f" (its {EVALUATION_TAG}={tag} tag is a summary, not evidence)" if tag else ""
        return None, [Blocker("evidence", f"version {v} has no evaluation record{forged}: {rerun}")]
    experiment = models.experiment_id()
    try:
        record = read_record(models.client, run_id, experiment)
    except RecordError as error:
        return None, [Blocker("evidence", f"version {v}: {error}: {rerun}")]
    if (record.model_name, record.model_version, record.model_run_id) != (
        models.name,
        v,
        candidate.run_id or "",
    ):
        return None, [
            Blocker(
                "evidence",
                f"version {v}'s {EVALUATION_RUN_TAG} points at run {run_id}, which evaluated "
                f"{record.model_name} version {record.model_version}, not this version: {rerun}",
            )
        ]
    latest = latest_record_id(models.client, experiment, models.name, v)
    if latest != run_id:
        return None, [
            Blocker(
                "evidence",
                f"version {v}'s {EVALUATION_RUN_TAG} points at record {run_id}, but its latest "
                f"evaluation is record {latest}: {rerun}",
            )
        ]
    blockers = []
    verdict = record.verdict
    if not verdict.passed:
        blockers.append(
            Blocker(
                "evidence",
                f"version {v} failed evaluation ({'; '.join(verdict.reasons)}; record {run_id})",
            )
        )
    against = champion.version if champion and champion.version != v else "none"
    if record.champion_version != against:
        blockers.append(
            Blocker(
                "stale",
                f"version {v} was evaluated against champion {record.champion_version}, but the "
                f"champion is now {against}: the evaluation is stale, {rerun}",
            )
        )
    if feature_table_version is not None and record.feature_table_version != str(
        feature_table_version
    ):
        blockers.append(
            Blocker(
                "stale",
                f"version {v} was evaluated on {record.feature_table} version "
                f"{record.feature_table_version}, which is now version {feature_table_version}: "
                "the evaluation is stale; train a new challenger on the current table "
                "(run training_job)",
            )
        )
    return record, blockers


def check_approval(
    candidate: VersionInfo, record: EvaluationRecord | None, separate_duties: bool
) -> list[Blocker]:
    v = candidate.version
    approval = candidate.approval
    tags = candidate.tags
    if approval is None:
        return [
            Blocker(NOT_APPROVED, f"model version {v} is not approved: {how_to_approve(candidate)}")
        ]
    if approval == REJECTED:
        reason = tags.get(REJECTION_REASON_TAG, "no reason given")
        who = tags.get(APPROVED_BY_TAG, "someone")
        return [Blocker("approval", f"model version {v} was rejected by {who}: {reason}")]
    if approval == ROLLED_BACK:
        return [
            Blocker(
                "approval",
                f"model version {v} was rolled back by {tags.get('rolled_back_by', 'someone')} "
                f"({tags.get('rolled_back_reason', 'no reason given')}): it is promoted again "
                f"only when approved again: {how_to_approve(candidate)}",
            )
        ]
    if approval != APPROVED:
        return [
            Blocker(
                NOT_APPROVED,
                f"model version {v} has {APPROVAL_TAG}={tags[APPROVAL_TAG]!r}, which is not "
                f"'{APPROVED}': {how_to_approve(candidate)}",
            )
        ]
    blockers = []
    bound = tags.get(APPROVAL_RUN_TAG)
    if bound == "none":
        blockers.append(
            Blocker(
                "approval",
                f"version {v} was approved before it was evaluated: look at its evaluation, then "
                f"approve again (`iris approve {v} --by NAME`, or in Catalog Explorer set tag "
                f"{APPROVAL_RUN_TAG}={record.run_id if record else '<its evaluation_run_id>'})",
            )
        )
    elif bound and record is not None and bound != record.run_id:
        blockers.append(
            Blocker(
                "approval",
                f"the approval of version {v} was given on an earlier evaluation (record {bound}); "
                f"it was evaluated again since (record {record.run_id}): approve again "
                f"(`iris approve {v} --by NAME`, or in Catalog Explorer set tag "
                f"{APPROVAL_RUN_TAG}={record.run_id})",
            )
        )
    if separate_duties:
        approver = tags.get(APPROVED_BY_TAG, "").strip()
        trainer = tags.get(TRAINED_BY_TAG, "").strip()
        if not approver:
            blockers.append(
                Blocker(
                    "duties",
                    f"separation of duties is on and nobody is named as approver of version {v}: "
                    f"set tag {APPROVED_BY_TAG}=<your name> next to {APPROVAL_TAG}={APPROVED} "
                    "(or use `iris approve`)",
                )
            )
        elif not trainer:
            blockers.append(Blocker("duties", unknown_trainer_message(v)))
        elif approver.lower() == trainer.lower():
            blockers.append(Blocker("duties", duties_message(v, trainer)))
    return blockers


def decide(
    models: ModelRegistry,
    candidate: VersionInfo,
    champion: VersionInfo | None,
    feature_table_version: str | None,
    separate_duties: bool,
) -> GateDecision:
    record, blockers = check_evidence(models, candidate, champion, feature_table_version)
    blockers += check_approval(candidate, record, separate_duties)
    return GateDecision(candidate=candidate, record=record, blockers=blockers)
