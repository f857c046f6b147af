"""``retraining_sensor``: retraining that starts itself; approval stays human.

Four triggers, each judged from evidence the pipeline already keeps:

- **drift**: ``feature_drift`` warned on the ``drift_days`` latest scored days, and they are
  consecutive calendar days (one drifting day is noise; a streak is a changed world);
- **decay**: the latest judged day's ``live_accuracy`` check failed (its own one-sided Wilson
  rule, on enough labels: ``core.performance``);
- **labels**: at least ``min_new_labels`` labelled flowers are not in ``iris_features`` yet;
- **retracted labels**: labelled flowers ``iris_features`` holds were retracted or corrected
  since; the run's ingest removes or corrects them.

The two label triggers read what the freshest ``model_performance`` run reported
(``core.label_evidence``, computed by the step where the tables are; ``latest_report``: two
days' reports can be stored in the other order than they read the tables), on both engines: the
orchestrator reads no table, so the same code path runs locally and on Databricks.

It runs ``training_job`` (ingest, train, evaluate), ingesting the labelled flowers
(``steps.performance.labelled_flowers_path``) as one more source: each keeps its ``flower_id``
and its side of the split is a hash of its measurements (``core.split``), so no existing flower
moves between train and test. The run carries the reason as the tag ``iris/retrain_reason``;
``challenger_model`` writes it on the new version as ``retrain_reason``. The job ends at
``evaluation_report``: nothing here can promote, ``champion_alias`` still needs a person.

A sensor rather than declarative automation: the triggers are conditions on check history and on the
label evidence in materialization metadata, not on asset materialization state, and the run needs
config (the labelled source) and a tag (the reason) that an ``AutomationCondition`` cannot attach.
While a challenger that passed evaluation waits for a person's decision (retrained or trained by
hand; not rejected, not served and rolled back), no other is trained, and a retrained one not
evaluated yet waits for its evaluation; one that failed blocks nothing (it cannot be approved) and
``notification_sensor`` says it failed. Each trigger's evidence is keyed on its own (``decay:DAY``,
``drift:LAST_DAY``, ``labels:<hash of each new flower's id, species and label batch>`` naming the
latest removal of labelled flowers stored before the report began reading, if any
(``new_labels_key``), ``retracted:<hash of each stale flower's id, held and current species and when
its row was written>``) and remembered in the sensor's cursor with the run keys requested for it, so
one piece of evidence starts at most one retrain that gets an answer. A run that failed or was
canceled before registering a challenger took nothing in, nor did one deleted (no run under its key
``SUBMIT_GRACE_SECONDS`` after the request): its evidence is asked for again under a new run key, up
to ``MAX_ATTEMPTS`` runs, then the tick names the runs and says what to do, and tells a person once
(``tell_given_up``, through ``IRIS_NOTIFY_URL``). Label evidence is taken in only by an ingest of
the very file the report wrote (``source_sha256`` equal to the report's
``labelled_flowers_sha256``). A retrain waits (the evidence unspent) while labels exist but
``labelled_flowers.parquet`` is gone (on Databricks: not on the landing volume, or unreadable with
the step runner's credentials, asked through the Files API): without it the run would ingest the
bundled Iris only.
"""

import hashlib
import json
import math
import time
from datetime import date, timedelta

import dagster as dg

from iris_assets.assets.notifications import NotifierResource, delivery_line
from iris_assets.assets.run_keys import RUN_KEY_TAG
from iris_assets.core.label_evidence import (
    HELD,
    LABELLED_SHA256,
    SOURCE_SHA256,
    ReportedEvidence,
    freshness,
    read_at,
)
from iris_assets.core.registry import RETRAIN_REASON_TAG
from iris_assets.resources import ModelRegistryResource, SettingsResource, StepRunner

RETRAIN_REASON_RUN_TAG = "iris/retrain_reason"
DRIFT_CHECK = dg.AssetCheckKey(dg.AssetKey("inference_table"), "feature_drift")
DECAY_CHECK = dg.AssetCheckKey(dg.AssetKey("model_performance"), "live_accuracy")
HISTORY = 200
USED_EVIDENCE = 500  # evidence keys remembered in the cursor


class RetrainingPolicy(dg.ConfigurableResource):
    """When ``retraining_sensor`` trains a new challenger."""

    drift_days: int = 3
    min_new_labels: int = 50
    # A flower whose label was retracted or corrected still trains the champion's successor
    # with the old label until the labelled source is ingested again: one is evidence enough.
    min_label_corrections: int = 1


def latest_by_day(instance: dg.DagsterInstance, key: dg.AssetCheckKey) -> dict[str, object]:
    """The latest evaluated record of ``key`` per partition (day)."""
    from dagster._core.storage.asset_check_execution_record import (
        AssetCheckExecutionRecordStatus as Status,
    )

    history = instance.event_log_storage.get_asset_check_execution_history(key, limit=HISTORY)
    latest: dict[str, object] = {}
    for record in sorted(history, key=lambda r: r.id):
        if record.partition and record.status in (Status.SUCCEEDED, Status.FAILED):
            latest[record.partition] = record
    return latest


def _failed(record) -> bool:
    from dagster._core.storage.asset_check_execution_record import (
        AssetCheckExecutionRecordStatus as Status,
    )

    return record.status == Status.FAILED


def drift_streak(instance: dg.DagsterInstance, days: int) -> list[str] | None:
    """The ``days`` latest scored days when all drifted and are consecutive, else None."""
    latest = latest_by_day(instance, DRIFT_CHECK)
    recent = sorted(latest)[-days:]
    if days < 1 or len(recent) < days or not all(_failed(latest[d]) for d in recent):
        return None
    dates = [date.fromisoformat(d) for d in recent]
    if any(b - a != timedelta(days=1) for a, b in zip(dates, dates[1:], strict=False)):
        return None
    return recent


def _metadata(record, key: str, default=None):
    entry = record.evaluation.metadata.get(key) if record.evaluation else None
    return default if entry is None else entry.value


def decayed_day(instance: dg.DagsterInstance) -> tuple[str, str] | None:
    """(day, summary) when the latest judged day's live_accuracy check failed.

    A later day with too few labels for a verdict does not hide an earlier decay.
    """
    latest = latest_by_day(instance, DECAY_CHECK)
    for day in sorted(latest, reverse=True):
        record = latest[day]
        if not _metadata(record, "judged", True):
            continue
        if not _failed(record):
            return None
        return day, _metadata(record, "summary", "live accuracy below the bar")
    return None


PERFORMANCE = dg.AssetKey("model_performance")
FEATURES = dg.AssetKey("iris_features")


RECENT_REPORTS = 20  # model_performance materializations looked at for the freshest report


def _values(record) -> dict:
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


def latest_report(instance: dg.DagsterInstance):
    """The freshest ``model_performance`` materialization (any day), or None.

    Two days' runs can go at once, and the one stored last may have read the tables first: each
    report names the labels- and feature-table versions it computed its evidence against and
    when it began reading them (``core.label_evidence.freshness``). Of the recent reports, one
    stored after the last-stored one began reading may have read newer tables; the highest
    (labels, features) versions win, ties go to the one stored later. One stored before that
    moment read older tables (or a table since recreated, whose versions started again), so it
    never wins. Reports of an earlier release name no versions: the last stored is taken."""
    records = [
        record
        for record in instance.fetch_materializations(PERFORMANCE, limit=RECENT_REPORTS).records
        # A materialization with no evidence (a runless "Report materialization" from the UI,
        # an earlier release's) says nothing of the tables: it cannot hide a real report.
        if ReportedEvidence.from_metadata(_values(record)) is not None
    ]
    if not records:
        return None
    best = records[0]
    last = _values(best)
    best_key, began = freshness(last), read_at(last)
    if best_key is None or began is None:
        return best
    for record in records[1:]:
        if record.timestamp < began:
            break  # stored before the last-stored report began reading: older tables
        key = freshness(_values(record))
        if key is not None and key > best_key:
            best, best_key = record, key
    return best


def reported_label_evidence(instance: dg.DagsterInstance, settings):
    """(the label evidence of the freshest ``model_performance`` report, its ``labels:`` key), or
    None.

    The step computed it against the tables it had just written (``core.label_evidence``), so
    this is one code path for both engines: the orchestrator never reads a table. It is as fresh
    as that run: evidence an ingest of exactly the file that run wrote took in since (a retrain,
    or a training run started by hand) is spent, so None."""
    record = latest_report(instance)
    if record is None:
        return None
    metadata = _values(record)
    evidence = ReportedEvidence.from_metadata(metadata)
    if evidence is None:
        return None
    written = metadata.get(LABELLED_SHA256)
    if labelled_source_ingested_since(instance, settings, record.storage_id, written):
        return None
    return evidence, new_labels_key(
        instance, settings, record.storage_id, evidence.new_hash, read_at(metadata)
    )


def new_labels_key(
    instance, settings, storage_id: int, new_hash: str, began: float | None = None
) -> str:
    """The evidence key of the new labelled flowers a report (``storage_id``) names.

    ``new_hash`` is a function of the tables the report read (each new flower's id, species and
    label batch), so flowers taken in, then removed (their batch withdrawn and the labelled
    source ingested without them), then landed again under the same batch name give the same
    hash as their first landing, which the cursor holds as spent. What differs is the history
    in between: an ingest of the labelled source removed rows. So the key also names the latest
    such ``iris_features`` materialization stored before the report (a retrain's or a hand-started
    run's, on either engine: Dagster's event log only). The same report seen twice, or a later
    one of the same tables, gives the same key; an unrelated feature-table write changes nothing;
    without any removal the key is ``labels:<hash>`` as before (earlier cursors stay valid)."""
    removal = labelled_removal_before(instance, settings, storage_id, began)
    suffix = f"@removal-{removal}" if removal is not None else ""
    return f"labels:{new_hash}{suffix}"


def labelled_removal_before(
    instance, settings, storage_id: int, began: float | None = None
) -> int | None:
    """The storage id of the latest ``iris_features`` materialization stored before
    ``storage_id`` that ingested the labelled source and removed rows of it, or None.

    With ``began`` (when the report began reading the tables) only a removal stored before
    that moment counts: one stored later may not be in the tables the report read, and naming
    it would make the flowers a retrain has just taken in new evidence again (a report that
    read before that retrain's ingest, stored after it). A removal committed before the report
    read but stored after is missed until the next report."""
    before = dg.AssetRecordsFilter(asset_key=FEATURES, before_storage_id=storage_id)
    for record in labelled_source_ingests(instance, settings, before):  # newest first
        if began is not None and record.timestamp >= began:
            continue
        removed = record.asset_materialization.metadata.get("rows_removed")
        count = removed.value if removed is not None else None
        if isinstance(count, int) and not isinstance(count, bool) and count > 0:
            return record.storage_id
    return None


def labelled_source_ingests(instance, settings, records_filter: dg.AssetRecordsFilter):
    """The ``iris_features`` materializations of ``records_filter`` (page by page, newest first)
    that ingested the labelled-flowers source."""
    source = labelled_source(settings)
    cursor = None
    while True:
        page = instance.fetch_materializations(records_filter, limit=HISTORY, cursor=cursor)
        for record in page.records:
            entry = record.asset_materialization.metadata.get("source")
            if entry is not None and entry.value == source:
                yield record
        if not page.has_more:
            return
        cursor = page.cursor


def labelled_source_ingested_since(
    instance, settings, storage_id: int, written: str | None = None
) -> bool:
    """Whether ``iris_features`` ingested the labelled-flowers file after ``storage_id``: that
    ingest took the file whole, so it holds exactly what the evidence said was missing or stale.

    Stored after the report is not enough: a run can read the file before the report rewrote it
    and finish after. With ``written`` (the content hash of the file the report wrote) only an
    ingest that read that very content (its ``source_sha256``) counts; one that records no
    hash, or another, does not. A report without a hash (an earlier release) takes any."""
    after = dg.AssetRecordsFilter(asset_key=FEATURES, after_storage_id=storage_id)
    for record in labelled_source_ingests(instance, settings, after):
        read = record.asset_materialization.metadata.get(SOURCE_SHA256)
        if written is None or (read is not None and read.value == written):
            return True
    return False


def labelled_source(settings) -> str:
    """``labelled_flowers.parquet`` as ``iris_features`` names its source (its resolved path; a
    volume path resolves to itself here as on serverless)."""
    from iris_assets.steps.ingest import source_identity

    return source_identity(labelled_flowers_file(settings))


def labelled_flowers_file(settings) -> str:
    from iris_assets.steps.performance import labelled_flowers_path

    return str(labelled_flowers_path(settings))


def missing_labelled_source(settings) -> str | None:
    """Why not to train now: labels exist but ``labelled_flowers.parquet`` is gone, else None.

    Without the file the run would ingest the bundled Iris only: retracted or corrected flowers
    would still train with their old label and new ones would be left out, under a reason that
    says otherwise. The file is derived from the labels table, so ``model_performance`` writes it
    again. (Local only: on Databricks ``volume_labelled_source`` asks the Files API.)"""
    from iris_assets.core.tables import sql_string
    from iris_assets.steps.ingest import source_identity
    from iris_assets.steps.performance import labelled_flowers_path
    from iris_assets.steps.stores import table_store

    path = labelled_flowers_path(settings)
    if settings.is_databricks or path.is_file():
        return None
    store = table_store(settings)
    labels = store.count(settings.labels_table) if store.exists(settings.labels_table) else 0
    held = 0
    if store.exists(settings.feature_table):
        source = sql_string(source_identity(str(path)))
        held = store.count(settings.feature_table, f"source = {source}")
    if not labels and not held:
        return None
    return (
        f"{path} is missing while the labels table holds {labels} labelled flowers and "
        f"iris_features {held} from it: a retrain now would ingest the bundled Iris only and "
        "train on stale labels. Materialize model_performance for any day (performance_job) "
        "to write it again from the labels table; the evidence is kept for the next tick"
    )


def retraining_reasons(instance, settings, policy: RetrainingPolicy) -> list[tuple[str, str]]:
    """(evidence key, reason) for every trigger that holds now."""
    reasons = []
    if streak := drift_streak(instance, policy.drift_days):
        reasons.append(
            (
                f"drift:{streak[-1]}",
                f"drift: feature_drift warned {len(streak)} days in a row "
                f"({streak[0]} to {streak[-1]})",
            )
        )
    if decay := decayed_day(instance):
        reasons.append((f"decay:{decay[0]}", f"decay on {decay[0]}: {decay[1]}"))
    reported = reported_label_evidence(instance, settings)
    evidence, labels_key = reported if reported else (None, "")
    if evidence and evidence.new and evidence.new >= policy.min_new_labels:
        reasons.append(
            (
                labels_key,
                f"labels: {evidence.new} new labelled flowers (at least {policy.min_new_labels})",
            )
        )
    stale = (evidence.retracted + evidence.corrected) if evidence else 0
    if stale and stale >= policy.min_label_corrections:
        reasons.append(
            (
                f"retracted:{evidence.stale_hash}",
                f"labels: {evidence.retracted} retracted and {evidence.corrected} corrected "
                "labelled flowers still train with their old label",
            )
        )
    return reasons


def waiting_retrained(models) -> str | None:
    """Why not to train now: a challenger still waits for a person, else None.

    Any challenger that passed evaluation waits, retrained or trained by hand: a retrain would
    move the alias off it (and its ingest would make that evaluation stale), so the approval a
    person was told to give would be refused. One a person rejected, or that was served and
    rolled back, waits for nobody. A failed one cannot be approved (the gate refuses
    it), so it blocks nothing and the next evidence trains its replacement. A retrained one not
    evaluated yet waits for its evaluation; one trained by hand and never evaluated is not
    approvable and blocks nothing."""
    from iris_assets.core.registry import EVALUATION_TAG, REJECTED, ROLLED_BACK

    challenger, champion = models.challenger(), models.champion()
    if challenger is None or (champion and champion.version == challenger.version):
        return None
    # A person decided: rejected, or served and rolled back (it keeps the challenger alias).
    if challenger.approval in (REJECTED, ROLLED_BACK):
        return None
    retrained = RETRAIN_REASON_TAG in challenger.tags
    evaluation = challenger.tags.get(EVALUATION_TAG)
    if evaluation == "failed" or (evaluation != "passed" and not retrained):
        return None
    if evaluation != "passed":
        return (
            f"retrained challenger v{challenger.version} has no evaluation yet: materialize "
            "evaluation_report (training_job) to judge it"
        )
    origin = (
        f"retrained challenger v{challenger.version} ({challenger.tags[RETRAIN_REASON_TAG]})"
        if retrained
        else f"challenger v{challenger.version} (trained by hand)"
    )
    return (
        f"{origin} passed evaluation and waits for approval: `iris approve "
        f"{challenger.version} --by NAME` or `iris reject {challenger.version} --by NAME "
        "--reason ...`; no retrain replaces it until a person decides"
    )


IN_FLIGHT = (
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
)


def training_in_flight(instance: dg.DagsterInstance) -> str | None:
    """Why not to train now: a ``training_job`` run has not finished yet, else None.

    Its challenger is not registered until its step ends (a serverless cold start alone can
    outlast a tick), so ``waiting_retrained`` cannot see it; a second run beside it would train
    on overlapping evidence and move the challenger alias to whichever registers last. Any
    training run counts, the sensor's own or one started by hand."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(job_name="training_job", statuses=list(IN_FLIGHT)), limit=1
    )
    if not records:
        return None
    run = records[0].dagster_run
    started_by = "retraining_sensor" if run.tags.get("iris/trigger") else "hand"
    # A run can wait forever (a queue no daemon drains, a launch that never happened): say how
    # long, and how to unblock it, or the sensor skips every tick with nothing to act on.
    age = max(0, int(time.time() - records[0].create_timestamp.timestamp()) // 60)
    return (
        f"training_job run {run.run_id} (started by {started_by}) is still "
        f"{run.status.value.lower()}, created {age} min ago: the next retrain waits until it "
        "finishes. If it will never run, terminate it (Dagster UI: Runs, or "
        f"`dagster run delete {run.run_id}`); evidence that arrived meanwhile is kept"
    )


MAX_ATTEMPTS = 3
"""Runs requested for one piece of evidence that end before registering a challenger; then the
tick names them and a person decides."""

ENDED_UNANSWERED = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
CHALLENGER = dg.AssetKey("challenger_model")


def _read_cursor(
    cursor: str | None, dropped: list[str] | None = None
) -> tuple[dict[str, list[str]], dict]:
    """(evidence key -> the run keys requested for it, oldest first; the last request: its run
    key and (key, reason) pairs). Cursors of earlier releases held a list of spent keys: spent
    still, by runs not known. Whatever is not of that shape reads as empty, named in
    ``dropped`` (the tick logs it): a cursor that raised would fail every tick, since a failed
    tick never changes it."""
    dropped = [] if dropped is None else dropped
    try:
        value = json.loads(cursor) if cursor else {}
    except ValueError:
        dropped.append("the whole cursor (not JSON)")
        return {}, {}
    if isinstance(value, list):
        return {str(key): [] for key in value}, {}
    if not isinstance(value, dict) or not isinstance(value.get("evidence"), dict):
        dropped.append("the whole cursor (no evidence mapping)")
        return {}, {}
    evidence = {}
    for key, runs in value["evidence"].items():
        if not isinstance(runs, list):
            dropped.append(f"the run keys of {key} (not a list)")
        evidence[str(key)] = [str(r) for r in runs] if isinstance(runs, list) else []
    return evidence, _read_last(value.get("last"), dropped)


def _cursor(evidence, last: dict, at: dict[str, float], told: list[str]) -> str:
    value = {"evidence": dict(evidence), "requested_at": at}
    if last:
        value["last"] = last
    if told:
        value["given_up_told"] = told
    return json.dumps(value)


def _read_last(last, dropped: list[str]) -> dict:
    """The last request (its run key and (key, reason) pairs of strings), or {}."""
    if last is None:
        return {}
    reasons = last.get("reasons", []) if isinstance(last, dict) else None
    pairs = isinstance(reasons, list) and all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in reasons
    )
    if not isinstance(last, dict) or "run_key" not in last or not pairs:
        dropped.append(f"the last request {json.dumps(last)[:200]} (not a run key and pairs)")
        return {}
    return {"run_key": str(last["run_key"]), "reasons": reasons}


def _materialized(instance: dg.DagsterInstance, run_id: str) -> set[dg.AssetKey]:
    events = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=HISTORY
    ).records
    return {e.event_log_entry.dagster_event.asset_key for e in events}


class Unanswered:
    """A run requested for some evidence that ended without registering a challenger, or that
    is gone from the instance (``run`` None: deleted)."""

    def __init__(self, run_key: str, run=None):
        self.run_key, self.run = run_key, run

    def __str__(self) -> str:
        if self.run is None:
            return f"run key {self.run_key} (no run: deleted)"
        return f"run {self.run.run_id} ({self.run.status.value.lower()})"


SUBMIT_GRACE_SECONDS = 600
"""How long after its request a run key may have no run: the daemon creates it within seconds."""


def _now() -> float:
    return time.time()


def _requested_at(cursor: str | None, dropped: list[str] | None = None) -> dict[str, float]:
    """run key -> when the tick requested it (cursors of earlier releases: none known). A time
    that is not a finite number is dropped and named in ``dropped``."""
    dropped = [] if dropped is None else dropped
    try:
        value = json.loads(cursor) if cursor else {}
    except ValueError:
        return {}
    at = value.get("requested_at") if isinstance(value, dict) else None
    if at is None:
        return {}
    if not isinstance(at, dict):
        dropped.append("the request times (not a mapping)")
        return {}
    times = {}
    for key, when in at.items():
        seconds = _seconds(when)
        if seconds is None:
            dropped.append(f"the request time of {key} ({str(when)[:40]}: not a time)")
        else:
            times[str(key)] = seconds
    return times


def _seconds(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        seconds = float(value)
    except OverflowError:
        return None
    return seconds if math.isfinite(seconds) else None


def _past_grace(requested_at: float | None) -> bool:
    """Whether a request made at ``requested_at`` (this host's clock) is older than
    ``SUBMIT_GRACE_SECONDS``. A request time in the future means the clock was stepped back
    since (NTP correcting a fast clock): how long ago it really was is unknown, and waiting
    for the clock to catch up would hide a deleted run for the size of the step. Ticks are
    ``minimum_interval_seconds`` (300 s) apart and the daemon creates a requested run within
    seconds, so such a request is treated as past its grace."""
    if requested_at is None:
        return False
    now = _now()
    return requested_at > now or now - requested_at > SUBMIT_GRACE_SECONDS


RETRAIN_RUN_KEY_TAG = "retrain_run_key"  # on the model version: the request it answers


def answered_in_registry(models, run_key: str) -> bool:
    """Whether a model version was registered by the run requested under ``run_key`` (its
    ``retrain_run_key`` tag, written by ``challenger_model``): that request was answered, even
    when the run is deleted from Dagster since. The registry is the record; a registry that
    cannot be read answers no."""
    from iris_assets.core.registry import RegistryError

    if models is None:
        return False
    try:
        versions = models.versions()
    except RegistryError:
        return False
    return any(v.tags.get(RETRAIN_RUN_KEY_TAG) == run_key for v in versions)


def unanswered_run(
    instance: dg.DagsterInstance, run_key: str, requested_at: float | None = None, models=None
) -> Unanswered | None:
    """The run requested under ``run_key`` when it failed or was canceled before registering a
    challenger (a serverless cold start that timed out, an ingest or a training step that
    failed), or when no run is under it ``SUBMIT_GRACE_SECONDS`` after its request
    (``requested_at``), else None.

    The daemon creates the run within seconds of the tick that requested it, so a key with no
    run long after was deleted (as the in-flight skip advises for a run that will never finish)
    and nothing was trained on its evidence; a run not created yet right after the request is
    not asked for twice. One still going or successful spent its evidence; so did one whose
    challenger then failed evaluation: that is an answer, and ``notification_sensor`` tells a
    person."""
    records = instance.get_run_records(filters=dg.RunsFilter(tags={RUN_KEY_TAG: run_key}), limit=1)
    if not records:
        gone = _past_grace(requested_at) and not answered_in_registry(models, run_key)
        return Unanswered(run_key) if gone else None
    run = records[0].dagster_run
    if run.status not in ENDED_UNANSWERED or CHALLENGER in _materialized(instance, run.run_id):
        return None
    return Unanswered(run_key, run)


def taken_in_by_unanswered(
    instance, last: dict, held: list[tuple[str, str]], requested, at, models=None
):
    """The last request's (key, reason) pairs no longer reported because a run requested for
    them ingested them before it failed, and no run requested for them answered: label evidence
    is then taken in, but nothing was trained on it. Every attempt counts, not only the last: a
    retry canceled before its own ingest leaves the labels its first attempt took in.

    Not kept when nothing can be in the table untrained: a report stored after the attempt's
    ingest began says ``iris_features`` holds no labelled flower (the ingest failed before its
    MERGE and the batch was withdrawn since), or a challenger was trained after the attempt's
    ingest began (a training run started by hand: it trained on the whole table, the merged
    labels with it)."""
    held_keys = {key for key, _ in held}
    gone = [(str(k), str(t)) for k, t in last.get("reasons", []) if k not in held_keys]
    if not gone:
        return []
    report = latest_report(instance)
    evidence = ReportedEvidence.from_metadata(_values(report)) if report else None
    kept = []
    for key, text in gone:
        attempts = [unanswered_run(instance, r, at.get(r), models) for r in requested.get(key, [])]
        if not attempts or any(a is None for a in attempts):
            continue
        for began in (ingest_began(instance, a.run.run_id) for a in attempts if a.run):
            if began is None or trained_since(instance, began):
                continue
            if evidence and evidence.held == 0 and report.timestamp > began:
                continue  # read after that ingest: it left no labelled flower in the table
            kept.append((key, text))
            break
    return kept


def trained_since(instance: dg.DagsterInstance, timestamp: float) -> bool:
    """Whether a ``challenger_model`` materialization was stored after ``timestamp``."""
    after = dg.AssetRecordsFilter(asset_key=CHALLENGER, after_timestamp=timestamp)
    return bool(instance.fetch_materializations(after, limit=1).records)


def ingest_began(instance: dg.DagsterInstance, run_id: str) -> float | None:
    """When the run's ``iris_features`` step started, or None if it never did. (A time, not a
    storage id: a run's own events and the asset index are numbered apart in sqlite storage.)"""
    events = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.STEP_START, limit=HISTORY
    ).records
    for event in events:
        if event.event_log_entry.step_key == FEATURES.path[-1]:
            return event.timestamp
    return None


def _attempt_run_key(evidence: str, attempt: int) -> str:
    key = "retrain-" + hashlib.sha256(evidence.encode()).hexdigest()[:16]
    # The daemon skips a run key it has seen: a retry of the same evidence needs its own.
    return key if attempt == 1 else f"{key}-{attempt}"


def _given_up_runs(
    instance, given_up: list[tuple[str, str]], requested
) -> list[tuple[str, object]]:
    """(run key, its run or None when deleted) of every attempt for the given-up evidence."""
    runs = sorted({r for key, _ in given_up for r in requested[key]})
    found = []
    for run_key in runs:
        records = instance.get_run_records(
            filters=dg.RunsFilter(tags={RUN_KEY_TAG: run_key}), limit=1
        )
        found.append((run_key, records[0].dagster_run if records else None))
    return found


def _given_up_reason(given_up: list[tuple[str, str]], runs) -> str:
    ids = [
        f"{run.run_id} ({run.status.value.lower()})" if run else f"{run_key} (deleted)"
        for run_key, run in runs
    ]
    return (
        f"training_job ended {MAX_ATTEMPTS} times without a challenger for "
        + "; ".join(text for _, text in given_up)
        + f": runs {', '.join(ids)}. Not retried again: see the runs' logs (Dagster UI: Runs), "
        "fix the cause, then re-execute the last one (it keeps its config and reason); new "
        "evidence starts a retrain as usual"
    )


def given_up_message(instance, given_up, requested, dagster_url: str) -> dict:
    """The ``retrain_given_up`` notification: the evidence this tick stopped retrying (only
    that: evidence that joined a later attempt keeps its own count), its runs and what to do.
    Run ids, the reason and commands only: never the webhook's URL or a secret."""
    runs = _given_up_runs(instance, given_up, requested)
    last = next((run for _, run in reversed(runs) if run is not None), None)
    return {
        "event": "retrain_given_up",
        "text": "retraining gave up: " + _given_up_reason(given_up, runs),
        "retrain_reason": "; ".join(text for _, text in given_up),
        "attempts": MAX_ATTEMPTS,
        "links": {"dagster_run": f"{dagster_url}/runs/{last.run_id}"} if last else {},
    }


def tell_given_up(context, instance, given_up, requested, told: list[str], notifier, env_home):
    """Tell a person, once per piece of evidence, that retraining gave up on it (``told``: the
    evidence keys already told, kept in the cursor). Told here, where the decision is made,
    not from a run's failure event: the last attempt may have been deleted (no event comes),
    and a run requested for several pieces of evidence is the last attempt of only some."""
    from iris_assets.core.notify import notify

    fresh = [(key, text) for key, text in given_up if key not in told]
    if not fresh:
        return told
    message = given_up_message(instance, fresh, requested, notifier.dagster_url)
    delivery = notify(message, notifier.url, env_home)
    line = delivery_line(message, delivery)
    if delivery.status == "failed" or delivery.outbox_error:
        context.log.warning(line)
    else:
        context.log.info(line)
    return [*told, *(key for key, _ in fresh)][-USED_EVIDENCE:]


def _read_told(cursor: str | None, dropped: list[str]) -> list[str]:
    """The evidence keys whose give-up was told (cursors of earlier releases: none)."""
    try:
        value = json.loads(cursor) if cursor else {}
    except ValueError:
        return []
    told = value.get("given_up_told", []) if isinstance(value, dict) else []
    if not isinstance(told, list):
        dropped.append("the give-ups told (not a list)")
        return []
    return [str(key) for key in told]


def volume_labelled_source(workspace, settings, instance) -> tuple[str | None, str | None]:
    """(source_path, why not to train now) on Databricks: ``labelled_flowers.parquet`` on the
    landing volume, looked up through the Files API with the step runner's credentials.

    Missing while ``model_performance`` reported labelled flowers (or iris_features holds some
    from it), or unreadable with these credentials: a reason, and the evidence is not spent. Missing
    before any labels: no labelled source (the run ingests the bundled Iris)."""
    from databricks.sdk.errors import NotFound, PermissionDenied

    path = labelled_flowers_file(settings)
    try:
        workspace.files.get_metadata(path)
    except PermissionDenied:
        return None, (
            f"these credentials cannot read {path} (landing volume {settings.landing_volume}): "
            "grant them READ VOLUME on it; a retrain now would ingest the bundled Iris only, so "
            "the evidence is kept for the next tick"
        )
    except NotFound:
        latest = latest_report(instance)
        metadata = latest.asset_materialization.metadata if latest else {}
        labelled = metadata.get("labelled_flowers")
        held = metadata.get(HELD)
        counts = [int(e.value) for e in (labelled, held) if e is not None]
        if not any(counts):
            return None, None
        return None, (
            f"{path} is missing on the landing volume (or the volume {settings.landing_volume} "
            f"does not exist) while model_performance last reported "
            f"{labelled.value if labelled else 0} labelled flowers and iris_features "
            f"{held.value if held else 0} from it: a retrain now would ingest the bundled Iris "
            "only and train on stale labels. Materialize model_performance for any day "
            "(performance_job) to write it again from the labels table; the evidence is kept "
            "for the next tick"
        )
    return path, None


@dg.sensor(
    job_name="training_job",
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Trains and evaluates a challenger when drift persists, live accuracy decays or "
    "enough labels arrived; never promotes.",
)
def retraining_sensor(
    context: dg.SensorEvaluationContext,
    settings: SettingsResource,
    registry: ModelRegistryResource,
    retraining: RetrainingPolicy,
    step_runner: StepRunner,
    notifier: NotifierResource,
):
    from iris_assets.core.registry import no_registry_yet
    from iris_assets.steps.performance import labelled_flowers_path

    current = settings.get()
    if no_registry_yet(current):
        return dg.SkipReason("no registry yet: retraining starts once a champion serves")
    models = registry.get()
    if models.champion() is None:
        return dg.SkipReason("no champion yet: the first model is trained by a person")
    if waiting := waiting_retrained(models):
        return dg.SkipReason(waiting)
    if running := training_in_flight(context.instance):
        return dg.SkipReason(running)  # before the cursor: the evidence is not spent
    # Each piece of evidence (a decayed day, a drift streak's last day, a set of new labelled
    # flowers) starts at most one retrain that gets an answer: the run keys requested for each
    # are kept in the cursor, so decay on D still holding after its retrain ingested the labels
    # (or the labels trigger dropping out) cannot start a second run. Label evidence an ingest
    # took in is no longer reported at all. A run that ended without a challenger spent nothing:
    # its evidence is requested again under a new run key, MAX_ATTEMPTS runs in all.
    dropped: list[str] = []
    requested, last = _read_cursor(context.cursor, dropped)
    at = _requested_at(context.cursor, dropped)
    told = _read_told(context.cursor, dropped)
    if dropped:
        context.log.warning(
            "retraining_sensor's cursor is damaged; read as empty: " + "; ".join(dropped)
        )
    held = retraining_reasons(context.instance, current, retraining)
    if last:
        held += taken_in_by_unanswered(context.instance, last, held, requested, at, models)
    reasons, retried, spent, given_up = [], [], [], []
    for key, text in held:
        runs = requested.get(key)
        if runs is None:
            reasons.append((key, text))
            continue
        failed = (
            unanswered_run(context.instance, runs[-1], at.get(runs[-1]), models) if runs else None
        )
        if failed is None:
            spent.append((key, text))
        elif len(runs) < MAX_ATTEMPTS:
            reasons.append((key, text))
            retried.append(str(failed))
        else:
            given_up.append((key, text))
    stuck = (
        _given_up_reason(given_up, _given_up_runs(context.instance, given_up, requested))
        if given_up
        else ""
    )
    if stuck:
        context.log.warning(stuck)

    def tell(evidence, last_request) -> None:
        """Post a give-up decided on this tick, last of all: nothing after it can raise and
        throw the cursor that records it away (a give-up told on every tick)."""
        if not stuck:
            return
        now_told = tell_given_up(
            context, context.instance, given_up, requested, told, notifier, current.env_home
        )
        if now_told != told:
            context.update_cursor(_cursor(evidence, last_request, at, now_told))

    if not reasons:
        if stuck:
            tell(requested.items(), last)
            return dg.SkipReason(stuck)
        if spent:
            return dg.SkipReason(
                "no new evidence: already retrained for " + "; ".join(text for _, text in spent)
            )
        return dg.SkipReason(
            f"no trigger: no drift streak of {retraining.drift_days} days, no decay, fewer than "
            f"{retraining.min_new_labels} new labelled flowers, fewer than "
            f"{retraining.min_label_corrections} retracted or corrected labelled flowers"
        )
    # The orchestrator cannot see /Volumes: on Databricks the file is looked up through the
    # Files API and the serverless ingest step reads it from the volume.
    if current.is_databricks:
        source, missing = volume_labelled_source(
            step_runner.workspace_client(), current, context.instance
        )
    else:
        missing = missing_labelled_source(current)
        path = labelled_flowers_path(current)
        source = str(path) if path.is_file() else None
    if missing:
        tell(requested.items(), last)
        return dg.SkipReason(missing)  # before the cursor: the evidence is not spent
    evidence = "|".join(key for key, _ in reasons)
    reason = "; ".join(text for _, text in reasons)
    attempt = 1 + max(len(requested.get(key, [])) for key, _ in reasons)
    run_key = _attempt_run_key(evidence, attempt)
    config = {"source_path": source} if source else {}
    if retried:
        context.log.warning(
            f"retraining again (attempt {attempt} of {MAX_ATTEMPTS}): "
            f"{', '.join(dict.fromkeys(retried))} ended without a challenger"
        )
    context.log.info(f"retraining: {reason}")
    for key, _ in reasons:
        requested[key] = [*requested.pop(key, []), run_key]
    kept = list(requested.items())[-USED_EVIDENCE:]  # the newest last: dicts keep their order
    last = {"run_key": run_key, "reasons": [list(pair) for pair in reasons]}
    at[run_key] = _now()
    live = {r for _, runs in kept for r in runs}
    at = {r: t for r, t in at.items() if r in live}
    context.update_cursor(_cursor(kept, last, at, told))
    tell(kept, last)
    return dg.RunRequest(
        run_key=run_key,
        run_config={"ops": {"iris_features": {"config": config}}} if config else {},
        tags={RETRAIN_REASON_RUN_TAG: reason[:4000], "iris/trigger": "retraining_sensor"},
    )
