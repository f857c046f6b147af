"""The suite's Dagster instances (tests/conftest.py) give each test a store of its own: what one
test's instance records is not seen by the next one, nor left in a template, and an instance
preloaded with a template's runs answers the project's queries as the template does."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import dagster as dg

from tests.assets.conftest import export_runs, import_runs
from tests.conftest import ROOT, new_instance, sqlite_instance

one = dg.asset(name="one")(lambda: 1)


@dg.asset_check(asset="one")
def one_is_fine():
    return dg.AssetCheckResult(passed=True, metadata={"where": "here"})


def test_a_new_in_memory_instance_is_empty_and_its_runs_stay_its_own(tmp_path):
    with new_instance(tmp_path / "first") as first:
        assert first.get_runs() == []
        assert dg.materialize([one], instance=first).success
        assert len(first.get_runs()) == 1
        assert first.get_latest_materialization_event(dg.AssetKey("one")) is not None
    with new_instance(tmp_path / "second") as second:
        assert second.get_runs() == []
        assert second.get_latest_materialization_event(dg.AssetKey("one")) is None


def test_a_copied_sqlite_instance_is_empty_and_its_runs_stay_its_own(
    tmp_path, dagster_instance_template
):
    with sqlite_instance(dagster_instance_template, tmp_path / "first") as first:
        assert first.get_runs() == []
        assert dg.materialize([one], instance=first).success
        assert len(first.get_runs()) == 1
        assert first.get_latest_materialization_event(dg.AssetKey("one")) is not None
    with sqlite_instance(dagster_instance_template, tmp_path / "second") as second:
        assert second.get_runs() == []
        assert second.get_latest_materialization_event(dg.AssetKey("one")) is None
    runs = dagster_instance_template / "history" / "runs.db"
    # immutable: read without locks or a -shm file, as other workers may be copying it now
    with sqlite3.connect(f"file:{runs}?immutable=1", uri=True) as template:
        assert template.execute("SELECT count(*) FROM runs").fetchone() == (0,)
    template.close()


def answers(instance: dg.DagsterInstance) -> dict:
    """What the project asks an instance (iris_assets/assets: sensors, run keys, notifications,
    retraining), for one asset and its check."""
    key = dg.AssetKey("one")
    runs = instance.get_runs()
    first = runs[-1].run_id
    return {
        "runs": [(r.run_id, r.status, r.tags.get("n")) for r in runs],
        "run_ids_by_tag": instance.get_run_ids(dg.RunsFilter(tags={"n": "2"})),
        "run_records": [
            (r.dagster_run.run_id, r.dagster_run.status)
            for r in instance.get_run_records(
                filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS])
            )
        ],
        "latest": instance.get_latest_materialization_event(key).run_id,
        "materializations": [
            (r.run_id, r.timestamp) for r in instance.fetch_materializations(key, limit=10).records
        ],
        "events_of_first": [
            e.event_log_entry.dagster_event_type
            for e in instance.get_records_for_run(first, limit=100).records
        ],
        "step_logs": len(instance.all_logs(first, of_type=dg.DagsterEventType.STEP_SUCCESS)),
        "check_history": [
            (r.run_id, r.status)
            for r in instance.event_log_storage.get_asset_check_execution_history(
                dg.AssetCheckKey(key, "one_is_fine"), limit=10
            )
        ],
        "successes": [
            r.event_log_entry.run_id
            for r in instance.fetch_run_status_changes(
                dg.DagsterEventType.RUN_SUCCESS, limit=10
            ).records
        ],
    }


def test_an_instance_preloaded_with_a_templates_runs_answers_as_the_template(
    tmp_path, dagster_instance_template
):
    with sqlite_instance(dagster_instance_template, tmp_path / "template") as template:
        for n in ("1", "2"):
            assert dg.materialize([one, one_is_fine], instance=template, tags={"n": n}).success
        expected = answers(template)
        exported = export_runs(template)
    with new_instance(tmp_path / "copy", preload=import_runs(exported)) as copy:
        assert answers(copy) == expected
        assert dg.materialize([one], instance=copy).success  # and it goes on recording
        assert len(copy.get_runs()) == 3
    with new_instance(tmp_path / "other") as other:
        assert other.get_runs() == []


def test_a_process_that_did_not_make_the_template_loads_its_runs(
    tmp_path, dagster_instance_template
):
    """The template's runs are exported by the worker that made it and loaded by every other
    one: a fresh process that has imported only the test modules must be able to read them."""
    with sqlite_instance(dagster_instance_template, tmp_path / "template") as template:
        assert dg.materialize([one, one_is_fine], instance=template).success
        (tmp_path / "runs.json").write_text(export_runs(template))
    load = (
        "import sys; from tests.assets.conftest import import_runs; "
        "print(len(import_runs(open(sys.argv[1]).read())))"
    )
    out = subprocess.run(
        [sys.executable, "-c", load, str(tmp_path / "runs.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["1"]


def test_a_template_path_is_rehomed_however_the_stored_text_spells_it():
    """Non-ASCII names are ``\\uXXXX`` in JSON, and a resource default is JSON inside JSON:
    each spelling of the template's folder becomes the same spelling of the copy's."""
    import json
    from pathlib import Path

    from tests.assets.conftest import rehomed

    for template, copy in [
        (Path("/tmp/bäse/tmpl"), Path('/tmp/c"opy\\ü/x')),
        (Path("/tmp/bäse/tmpl"), Path("/tmp/plain/x")),
        (Path("/tmp/plain/tmpl"), Path("/tmp/plain/tmpl-copy")),
    ]:
        values = {"path": f"{template}/warehouse", "raw": f"{template}/mlartifacts"}
        text = json.dumps({**values, "default": json.dumps({"home": str(template)})})
        text += f" {template}/mlruns"  # as MLflow's columns hold it
        moved_json, _, moved_raw = rehomed(text, template, copy).rpartition(" ")
        moved = json.loads(moved_json)
        assert moved["path"] == f"{copy}/warehouse" and moved["raw"] == f"{copy}/mlartifacts"
        assert json.loads(moved["default"]) == {"home": str(copy)}
        assert moved_raw == f"{copy}/mlruns"
