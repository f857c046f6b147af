"""The promotion gate tried as a careless or hostile user would: forged tags, stale evidence,
out-of-turn versions, rollbacks, revoked champions, failed runs, a drifting endpoint.

Every test starts from a copy of one home trained and evaluated once per session by the real
``training_job`` (challenger version 1, evaluation passed, no champion); more versions are
logged in-process and evaluated by the real ``evaluation_report`` step.
"""

from __future__ import annotations

import dataclasses
import shutil
import socket

import dagster as dg
import pytest
from mlflow import MlflowClient
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from iris_assets.assets.promotion_sensor import MAX_ATTEMPTS, promotion_request
from iris_assets.core.held_out import FEATURE_VERSION_TAG
from iris_assets.core.landing import LandingArea, simulate_flowers
from iris_assets.core.registry import ModelRegistry, RegistryError, ensure_experiment
from iris_assets.core.schema import FEATURE_COLUMNS
from iris_assets.definitions import build_definitions
from iris_assets.settings import CHALLENGER_ALIAS, CHAMPION_ALIAS, load_settings
from iris_assets.status import collect_status, status_lines
from iris_assets.steps.stores import table_store
from tests.assets.conftest import TRAINER, rehome
from tests.assets.helpers import (
    check_results,
    materialization_metadata,
    materialize,
    run_job,
    sensor_decision,
    step_failure_messages,
)
from tests.conftest import new_instance

DAY = "2026-11-21"


@pytest.fixture
def home(settings, trained_home, monkeypatch, tmp_path):
    """This test's settings over a copy of the trained home (its registry pointed at the copy's
    artifacts, so a test writes only its own files), its definitions and instance."""
    template = trained_home / settings.env_home.relative_to(settings.home)
    shutil.rmtree(settings.env_home)
    shutil.copytree(template, settings.env_home)
    rehome(settings.env_home, template, settings.env_home)
    monkeypatch.delenv("IRIS_SEPARATE_DUTIES", raising=False)
    with new_instance(tmp_path / "dagster") as instance:
        yield settings, build_definitions(settings), instance


@pytest.fixture
def models(home) -> ModelRegistry:
    return ModelRegistry(home[0])


def catalog(settings) -> MlflowClient:
    """What a person with APPLY_TAG in Catalog Explorer (or a bare MlflowClient) can do."""
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)


def tag(settings, version: str, **tags: str) -> None:
    for key, value in tags.items():
        catalog(settings).set_model_version_tag(settings.model_name, version, key, value)


def new_challenger(settings, trained_by: str = TRAINER) -> str:
    """A new version logged in-process (no evaluation yet), aliased challenger, tagged with the
    feature-table version it stands for as the train step would tag it."""
    import mlflow
    import mlflow.sklearn

    data = load_iris(as_frame=True)
    features = data.data.set_axis(list(FEATURE_COLUMNS), axis=1)
    model = LogisticRegression(max_iter=300).fit(features, data.target)
    with mlflow.start_run(experiment_id=ensure_experiment(settings)):
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=settings.model_name,
            serialization_format="skops",
            pip_requirements=["scikit-learn"],
        )
    version = str(info.registered_model_version)
    models = ModelRegistry(settings)
    feature_version = table_store(settings).version(settings.feature_table)
    models.set_tags(version, {"trained_by": trained_by, FEATURE_VERSION_TAG: feature_version})
    models.set_alias(CHALLENGER_ALIAS, version)
    return version


def evaluate(defs, instance, min_accuracy: float = 0.9) -> bool:
    """The real evaluation_report step; whether the challenger passed (its blocking check)."""
    config = {"ops": {"evaluation_report": {"config": {"min_accuracy": min_accuracy}}}}
    result = materialize(defs, instance, "evaluation_report", run_config=config)
    assert materialization_metadata(result, "evaluation_report")["evaluation_run_id"]
    return check_results(result)["evaluation_passed"]


def promote(defs, instance, **config):
    """champion_alias alone (no endpoint), as a person launching it from the UI would."""
    run_config = {"ops": {"champion_alias": {"config": config}}} if config else None
    result = materialize(defs, instance, "champion_alias", run_config=run_config)
    return result, step_failure_messages(result)


def run_request(defs, instance, decision: dg.RunRequest, only=("champion_alias",), **kwargs):
    """What the daemon does with a RunRequest (without the endpoint unless asked for)."""
    return materialize(
        defs, instance, *only, run_config=decision.run_config, tags=decision.tags, **kwargs
    )


def skip_text(defs, instance) -> str:
    """Why the sensor does not promote the challenger (its promotion part, without serving)."""
    settings = defs.resources["registry"].settings.get()
    decision = promotion_request(ModelRegistry(settings), instance, settings)
    assert isinstance(decision, dg.SkipReason), decision
    return decision.skip_message


def sensor_skip(defs, instance) -> str:
    decision, _ = sensor_decision(defs, instance)
    assert isinstance(decision, dg.SkipReason), decision
    return decision.skip_message


def test_a_forged_evaluation_tag_promotes_nothing(home, models):
    settings, defs, instance = home
    version = new_challenger(settings)
    tag(settings, version, evaluation="passed", approval="approved", approved_by="mallory")

    text = skip_text(defs, instance)
    assert f"version {version} has no evaluation record" in text
    assert "evaluation=passed tag is a summary, not evidence" in text
    result, message = promote(defs, instance)
    assert not result.success and "no evaluation record" in message

    # Pointing the tag at the record of another version is no better.
    tag(settings, version, evaluation_run_id=models.get("1").tags["evaluation_run_id"])
    assert "evaluated iris_dev.ml.iris_model version 1, not this version" in skip_text(
        defs, instance
    )
    assert models.champion() is None


def test_a_failed_evaluation_stays_failed_whatever_the_tags_say(home, models):
    settings, defs, instance = home
    passing_record = models.get("1").tags["evaluation_run_id"]
    assert not evaluate(defs, instance, min_accuracy=1.01)
    tag(settings, "1", evaluation="passed", evaluation_reason="passed", approval="approved")

    text = skip_text(defs, instance)
    assert "version 1 failed evaluation (accuracy" in text and "below the minimum 1.01" in text
    # Nor does pointing back at the earlier record that passed.
    tag(settings, "1", evaluation_run_id=passing_record)
    assert "but its latest evaluation is record" in skip_text(defs, instance)
    result, message = promote(defs, instance)
    assert not result.success and "latest evaluation" in message
    assert models.champion() is None


def test_an_evaluation_is_stale_once_the_champion_changed(home, models):
    settings, defs, instance = home
    version = new_challenger(settings)
    assert evaluate(defs, instance)  # against no champion
    models.approve(version, by="ana")
    # Someone moves the champion by hand after the evaluation.
    catalog(settings).set_registered_model_alias(settings.model_name, CHAMPION_ALIAS, "1")

    text = skip_text(defs, instance)
    assert "evaluated against champion none, but the champion is now 1" in text
    assert "the evaluation is stale" in text
    result, message = promote(defs, instance)
    assert not result.success and "stale" in message
    assert models.champion().version == "1"


def test_an_evaluation_is_stale_once_the_feature_table_changed(home, models, tmp_path):
    _, defs, instance = home
    models.approve("1", by="ana")
    # A newly labelled flower arrives after the evaluation (an unchanged re-ingest commits
    # nothing, so it could not make anything stale).
    newcomer = tmp_path / "newcomer.csv"
    newcomer.write_text(
        "flower_id,sepal_length_cm,sepal_width_cm,petal_length_cm,petal_width_cm,species\n"
        "10001,5.0,3.4,1.5,0.2,0\n"
    )
    config = {"ops": {"iris_features": {"config": {"source_path": str(newcomer)}}}}
    assert materialize(defs, instance, "iris_features", run_config=config).success
    text = skip_text(defs, instance)
    assert "was evaluated on iris_dev.ml.iris_features version" in text
    assert "which is now version" in text and "stale" in text
    assert not promote(defs, instance)[0].success


def test_an_approval_before_evaluation_or_before_a_failing_reevaluation_does_not_count(
    home, models
):
    settings, defs, instance = home
    version = new_challenger(settings)
    with pytest.raises(RegistryError, match="has no evaluation record yet"):
        models.approve(version, by="ana")
    tag(settings, version, approval="approved")  # in Catalog Explorer, before evaluation
    assert evaluate(defs, instance)
    text = skip_text(defs, instance)
    assert "approved before it was evaluated" in text and "approve again" in text

    models.approve(version, by="ana")
    assert not evaluate(defs, instance, min_accuracy=1.01)  # re-evaluated: now failing
    text = skip_text(defs, instance)
    assert "failed evaluation" in text and "was given on an earlier evaluation" in text

    tag(settings, "1", approval="approved")  # v1 is no longer the challenger: nothing happens
    assert models.champion() is None


def test_an_approval_survives_a_reevaluation_on_the_same_evidence(home, models):
    _, defs, instance = home
    models.approve("1", by="ana")
    assert evaluate(defs, instance)
    decision, _ = sensor_decision(defs, instance)
    assert isinstance(decision, dg.RunRequest), decision


def test_a_catalog_approval_is_bound_the_first_time_the_pipeline_sees_it(home, models):
    settings, defs, instance = home
    tag(settings, "1", approval="Approved")  # the value is case-insensitive
    decision, _ = sensor_decision(defs, instance)
    assert isinstance(decision, dg.RunRequest), decision
    record = models.get("1").tags["evaluation_run_id"]
    assert models.get("1").tags["approval_evaluation_run_id"] == record
    assert decision.tags["iris/evaluation_run_id"] == record
    assert run_request(defs, instance, decision).success
    assert models.champion().version == "1"
    assert "already champion" in skip_text(defs, instance)


def test_only_the_challenger_is_promoted(home, models):
    settings, defs, instance = home
    models.approve("1", by="ana")
    new_challenger(settings)

    result, message = promote(defs, instance, version="1")
    assert not result.success
    assert "version 1 is not the challenger (version 2 is)" in message and "rollback" in message
    with pytest.raises(RegistryError, match="not the challenger"):
        models.approve("1", by="ana")
    assert models.champion() is None


def test_rollback_then_reapproval_then_revocation(home, models):
    settings, defs, instance = home
    models.approve("1", by="ana")
    assert promote(defs, instance)[0].success
    second = new_challenger(settings)
    assert evaluate(defs, instance)
    models.approve(second, by="ana")
    first_request, _ = sensor_decision(defs, instance)
    assert run_request(defs, instance, first_request).success
    assert models.champion().version == second

    rollback = {"rollback": True, "to": "", "by": "olga", "reason": "complaints from the lab"}
    result, message = promote(defs, instance, **rollback)
    assert result.success, message
    metadata = materialization_metadata(result, "champion_alias")
    assert (metadata["champion_version"], metadata["rolled_back_from"]) == ("1", second)
    assert models.champion().version == "1"
    tags = models.get(second).tags
    assert tags["approval"] == "rolled_back" and tags["rolled_back_by"] == "olga"
    assert tags["rolled_back_reason"] == "complaints from the lab" and tags["rolled_back_to"] == "1"
    assert models.get("1").tags["reinstated_from"] == second

    assert "was rolled back by olga" in skip_text(defs, instance)
    models.approve(second, by="ana")
    again, _ = sensor_decision(defs, instance)
    assert isinstance(again, dg.RunRequest) and again.run_key != first_request.run_key
    assert run_request(defs, instance, again).success
    assert models.champion().version == second

    # Revoked in the catalog while champion: the sensor rolls back through rollback_job.
    tag(settings, second, approval="rejected", rejection_reason="wrong greenhouse")
    decision, _ = sensor_decision(defs, instance)
    assert isinstance(decision, dg.RunRequest) and decision.job_name == "rollback_job"
    assert run_request(defs, instance, decision).success
    assert models.champion().version == "1"
    assert models.get(second).tags["rolled_back_reason"].endswith("wrong greenhouse")

    # Revoked with no earlier champion: it keeps serving, and the checks and status go red.
    models.reject("1", by="ana", reason="the old one is bad too")
    decision, _ = sensor_decision(defs, instance)
    assert isinstance(decision, dg.RunRequest) and decision.job_name == "lifecycle_checks_job"
    checks = defs.resolve_job_def("lifecycle_checks_job").execute_in_process(
        instance=instance, tags=decision.tags, raise_on_error=False
    )
    assert check_results(checks)["champion_is_approved"] is False
    text = sensor_skip(defs, instance)
    assert "was rejected (the old one is bad too)" in text and "no earlier champion" in text
    lines = "\n".join(status_lines(collect_status(settings)))
    assert "REJECTED (the old one is bad too)" in lines and "iris approve" in lines


def test_rollback_refuses_a_version_that_was_never_champion(home, models):
    settings, defs, instance = home
    models.approve("1", by="ana")
    assert promote(defs, instance)[0].success
    new_challenger(settings)
    with pytest.raises(RegistryError, match="no earlier champion"):
        models.rollback(None, by="olga", reason="why not")
    with pytest.raises(RegistryError, match="was never champion"):
        models.rollback("2", by="olga", reason="out of turn")
    # Forging the history tags does not make v2 a former champion: Dagster's log decides.
    tag(settings, "2", promoted_at="2026-01-01T00:00:00+00:00")
    tag(settings, "1", previous_champion="2")
    result, message = promote(defs, instance, rollback=True, to="2", by="olga", reason="forged")
    assert not result.success and "version 2 was never champion" in message
    result, message = promote(defs, instance, rollback=True, by="olga", reason="forged chain")
    assert not result.success and "no earlier champion" in message
    assert models.champion().version == "1"


def test_a_recreated_model_does_not_inherit_its_predecessors_champion_history(home, models):
    settings, defs, instance = home
    models.approve("1", by="ana")
    assert promote(defs, instance)[0].success  # Dagster's history: v1 of the first model
    catalog(settings).delete_registered_model(settings.model_name)
    assert (new_challenger(settings), new_challenger(settings)) == ("1", "2")  # new runs
    catalog(settings).set_registered_model_alias(settings.model_name, CHAMPION_ALIAS, "2")
    tag(settings, "1", promoted_at="2026-01-01T00:00:00+00:00")
    result, message = promote(defs, instance, rollback=True, to="1", by="olga", reason="old v1")
    assert not result.success and "version 1 was never champion" in message


def test_the_iris_command_refuses_out_of_turn_approvals_and_rollbacks(home, monkeypatch, capsys):
    from iris_assets.cli import main

    settings, _, _ = home
    monkeypatch.setenv("DAGSTER_HOME", str(settings.dagster_home))
    new_challenger(settings)
    assert main(["approve", "2", "--by", "ana"]) == 2
    assert "version 2 has no evaluation record yet" in capsys.readouterr().err
    assert main(["approve", "1", "--by", "ana"]) == 2
    assert "version 1 is not the challenger" in capsys.readouterr().err
    assert main(["rollback", "--by", "ana", "--reason", "why"]) == 2
    assert "has no champion: there is nothing to roll back" in capsys.readouterr().err


def test_a_failed_promotion_run_is_retried_a_bounded_number_of_times(home, models, tmp_path):
    settings, defs, instance = home
    models.approve("1", by="ana")
    # The same job over a registry it cannot find: every run of it fails.
    broken = build_definitions(dataclasses.replace(settings, home=tmp_path / "elsewhere"))
    keys = []
    for attempt in range(1, MAX_ATTEMPTS + 1):
        decision, _ = sensor_decision(defs, instance)
        assert isinstance(decision, dg.RunRequest), decision
        assert decision.run_key.endswith(f"-{attempt}")
        if attempt > 1:
            assert "has no challenger" in decision.tags["iris/retry_of"]
        keys.append(decision.run_key)
        assert not run_request(broken, instance, decision).success
    text = sensor_skip(defs, instance)
    assert f"failed {MAX_ATTEMPTS} times, not retrying" in text and "has no challenger" in text

    models.approve("1", by="ana")  # a new approval is a new request
    decision, _ = sensor_decision(defs, instance)
    assert isinstance(decision, dg.RunRequest) and decision.run_key not in keys
    assert run_request(defs, instance, decision).success
    assert models.champion().version == "1"


def test_an_endpoint_that_failed_to_follow_the_alias_is_reconciled(home, models):
    settings, defs, instance = home
    models.approve("1", by="ana")
    decision, _ = sensor_decision(defs, instance)
    with socket.socket() as squatter:  # another program holds the serving port
        squatter.bind((settings.serving_host, settings.serving_port))
        squatter.listen()
        promotion = run_request(
            defs, instance, decision, only=("champion_alias", "serving_endpoint")
        )
        assert not promotion.success and "already in use" in step_failure_messages(promotion)
        assert models.champion().version == "1"
        assert "MISMATCH" in "\n".join(status_lines(collect_status(settings)))
    reconcile, _ = sensor_decision(defs, instance)
    assert isinstance(reconcile, dg.RunRequest) and reconcile.job_name == "serving_job"
    served = run_request(defs, instance, reconcile, only=("serving_endpoint",))
    assert served.success, step_failure_messages(served)
    assert check_results(served)["serving_matches_champion"] is True
    assert "serves champion version 1" in sensor_skip(defs, instance)


def test_the_trainer_cannot_approve_their_own_model_when_duties_are_separated(
    home, models, monkeypatch
):
    settings, defs, instance = home
    assert models.get("1").tags["trained_by"] == TRAINER
    monkeypatch.setenv("IRIS_SEPARATE_DUTIES", "on")
    with pytest.raises(RegistryError, match="trained by 'tess', who may not also approve it"):
        models.approve("1", by=TRAINER, separate_duties=True)

    tag(settings, "1", approval="approved")  # in the catalog, nobody named
    assert "nobody is named as approver" in skip_text(defs, instance)
    tag(settings, "1", approved_by="Tess")
    assert "who may not also approve it" in skip_text(defs, instance)
    assert not promote(defs, instance)[0].success
    tag(settings, "1", approved_by="ana")
    assert isinstance(sensor_decision(defs, instance)[0], dg.RunRequest)


def test_a_version_without_a_recorded_trainer_is_not_approvable_when_duties_are_separated(
    home, models, monkeypatch
):
    settings, defs, instance = home
    monkeypatch.setenv("IRIS_SEPARATE_DUTIES", "on")
    # The trainer erases the trace of who trained it, then approves as someone else would.
    catalog(settings).delete_model_version_tag(settings.model_name, "1", "trained_by")
    with pytest.raises(RegistryError, match="has no trained_by tag"):
        models.approve("1", by=TRAINER, separate_duties=True)
    tag(settings, "1", approval="approved", approved_by=TRAINER)
    assert "has no trained_by tag" in skip_text(defs, instance)
    assert not promote(defs, instance)[0].success


def test_separation_of_duties_is_on_in_prod_and_off_in_dev():
    from iris_assets.settings import separate_duties

    assert separate_duties(load_settings({"IRIS_ENV": "prod"}), {}) is True
    assert separate_duties(load_settings({"IRIS_ENV": "dev"}), {}) is False
    prod = load_settings({"IRIS_ENV": "prod"})
    assert separate_duties(prod, {"IRIS_SEPARATE_DUTIES": "off"}) is False


def test_materialize_all_on_a_fresh_home_waits_for_approval_then_completes(settings, graph):
    """The UI flow: "Materialize all" (with a day picked), approve, and "Materialize all" again."""
    defs, instance = graph
    LandingArea(settings.landing_dir).write_batch(simulate_flowers(40, DAY, seed=3), DAY)
    everything = defs.resolve_implicit_global_asset_job_def()

    first = everything.execute_in_process(
        instance=instance, partition_key=DAY, raise_on_error=False
    )
    assert first.success, step_failure_messages(first)
    assert materialized(first) == {"iris_features", "challenger_model", "evaluation_report"}
    assert all(check_results(first).values()), check_results(first)
    skipped = {e.step_key for e in first.all_events if e.event_type_value == "STEP_SKIPPED"}
    assert {"serving_endpoint", "inference_table"} <= skipped
    logs = [e.message for e in instance.all_logs(first.run_id) if e.message]
    assert any("waiting for approval: run `iris approve 1 --by NAME`" in m for m in logs)

    models = ModelRegistry(settings)
    models.approve("1", by="ana")
    decision, _ = sensor_decision(defs, instance)
    assert decision.job_name == "promotion_job"
    promotion = run_job(
        defs, instance, "promotion_job", run_config=decision.run_config, tags=decision.tags
    )
    assert promotion.success, step_failure_messages(promotion)

    second = everything.execute_in_process(
        instance=instance, partition_key=DAY, raise_on_error=False
    )
    assert second.success, step_failure_messages(second)
    assert "inference_table" in materialized(second) and "serving_endpoint" in materialized(second)
    assert all(check_results(second).values()), check_results(second)
    champion = materialization_metadata(second, "champion_alias")
    assert (champion["champion_version"], champion["changed"]) == ("1", False)
    assert "iris approve 2" in champion["note"]
    assert materialization_metadata(second, "inference_table")["model_version"] == "1"


def materialized(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
