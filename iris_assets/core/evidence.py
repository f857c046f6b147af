"""The evaluation record: the evidence promotion trusts, kept as the evaluation's own MLflow run.

The evaluate step writes one run per evaluation in the environment's experiment. Everything the
verdict depends on is a run *parameter* (the metrics of both models, the thresholds, the
held-out split's identity, the feature-table version, the champion compared against), because
MLflow refuses to change a logged parameter: a person who can tag a model version (an approver
in Catalog Explorer) cannot edit it, and even the run's owner cannot rewrite it, only add a new
run. Metrics are logged too, for the MLflow UI, but never read back.

Promotion reads the record the version's ``evaluation_run_id`` tag points at and re-derives the
verdict from it with ``judge_metrics``; the version's ``evaluation`` tag is only a summary for
people and is never trusted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from iris_assets.core.verdict import JUDGED_METRICS, Thresholds, Verdict, judge_metrics

RECORD_KIND_TAG = "iris.record"
RECORD_KIND = "evaluation"
RECORD_FORMAT = "1"
NONE = "none"


def split_identity(flower_ids: Iterable[Any]) -> str:
    """A short, order-independent hash of the held-out flower_ids: which rows were the test."""
    digest = hashlib.sha256()
    for flower_id in sorted(str(f) for f in flower_ids):
        digest.update(flower_id.encode())
        digest.update(b"\n")
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class EvaluationRecord:
    """What one evaluation saw and measured; ``verdict`` is recomputed, never stored-and-trusted."""

    run_id: str
    model_name: str
    model_version: str
    model_run_id: str  # the training run behind the version: tells a re-created model's v1 apart
    champion_version: str  # "none" when there was no champion to compare against
    feature_table: str
    feature_table_version: str
    held_out_rows: int
    held_out_sha256: str
    thresholds: Thresholds
    challenger_metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    status: str = "FINISHED"
    active: bool = True

    @property
    def verdict(self) -> Verdict:
        return judge_metrics(self.challenger_metrics, self.champion_metrics, self.thresholds)

    def params(self) -> dict[str, str]:
        params = {
            "record_format": RECORD_FORMAT,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "model_run_id": self.model_run_id,
            "champion_version": self.champion_version,
            "feature_table": self.feature_table,
            "feature_table_version": self.feature_table_version,
            "held_out_rows": str(self.held_out_rows),
            "held_out_sha256": self.held_out_sha256,
            **{name: repr(float(value)) for name, value in self.thresholds.__dict__.items()},
        }
        for name in JUDGED_METRICS:
            params[f"challenger_{name}"] = repr(float(self.challenger_metrics[name]))
            if self.champion_metrics is not None:
                params[f"champion_{name}"] = repr(float(self.champion_metrics[name]))
        return params

    @classmethod
    def from_params(
        cls, run_id: str, params: Mapping[str, str], status: str = "FINISHED", active: bool = True
    ) -> EvaluationRecord:
        """Rebuild a record from its run's parameters; KeyError/ValueError if incomplete."""
        champion = params["champion_version"]
        return cls(
            run_id=run_id,
            model_name=params["model_name"],
            model_version=params["model_version"],
            model_run_id=params["model_run_id"],
            champion_version=champion,
            feature_table=params["feature_table"],
            feature_table_version=params["feature_table_version"],
            held_out_rows=int(params["held_out_rows"]),
            held_out_sha256=params["held_out_sha256"],
            thresholds=Thresholds(
                min_accuracy=float(params["min_accuracy"]),
                min_f1_macro=float(params["min_f1_macro"]),
                max_regression=float(params["max_regression"]),
            ),
            challenger_metrics={n: float(params[f"challenger_{n}"]) for n in JUDGED_METRICS},
            champion_metrics=None
            if champion == NONE
            else {n: float(params[f"champion_{n}"]) for n in JUDGED_METRICS},
            status=status,
            active=active,
        )


def write_record(
    client,
    experiment_id: str,
    record_fields: dict[str, Any],
    run_name: str,
    tags: Mapping[str, str],
    metrics: Mapping[str, float],
) -> EvaluationRecord:
    """Create the evaluation's run, log the record as parameters, finish the run; the record.

    The run is finished last: a step that dies halfway leaves a run that is not FINISHED,
    which promotion refuses.
    """
    run = client.create_run(
        experiment_id,
        run_name=run_name,
        tags={RECORD_KIND_TAG: RECORD_KIND, **tags},
    )
    record = EvaluationRecord(run_id=run.info.run_id, **record_fields)
    from mlflow.entities import Metric, Param

    client.log_batch(
        run.info.run_id,
        params=[Param(k, v) for k, v in record.params().items()],
        metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()],
    )
    client.set_terminated(run.info.run_id, "FINISHED")
    return record


class RecordError(LookupError):
    """The evaluation record is missing, unfinished, deleted or not a record at all."""


def read_record(client, run_id: str, experiment_id: str | None) -> EvaluationRecord:
    """The record of run ``run_id``, checked to be a finished evaluation run of this experiment."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise RecordError(f"evaluation record {run_id} does not exist") from None
    if run.data.tags.get(RECORD_KIND_TAG) != RECORD_KIND:
        raise RecordError(f"run {run_id} is not an evaluation record")
    if experiment_id is not None and run.info.experiment_id != experiment_id:
        raise RecordError(f"run {run_id} is not in this environment's experiment")
    if run.info.lifecycle_stage != "active":
        raise RecordError(f"evaluation record {run_id} was deleted")
    if run.info.status != "FINISHED":
        raise RecordError(f"evaluation record {run_id} is {run.info.status}, not FINISHED")
    try:
        return EvaluationRecord.from_params(run_id, run.data.params, run.info.status)
    except (KeyError, ValueError) as error:
        raise RecordError(f"evaluation record {run_id} is incomplete ({error})") from None


def latest_record_id(client, experiment_id: str, model_name: str, version: str) -> str | None:
    """The newest finished evaluation record of ``model_name`` version ``version``, if any.

    Promotion accepts only this one: pointing ``evaluation_run_id`` at an older record that
    passed (before a stricter re-evaluation failed) is refused.
    """
    runs = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.`{RECORD_KIND_TAG}` = '{RECORD_KIND}' and params.model_name = '{model_name}' "
            f"and params.model_version = '{version}' and attributes.status = 'FINISHED'"
        ),
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None
