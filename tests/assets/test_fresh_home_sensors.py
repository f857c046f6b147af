"""The sensors on a home where nothing has run yet, as every fresh `iris dev` ticks them: each
says why it waits, and none makes the registry it only reads."""

import dagster as dg

from iris_assets.assets.notifications import OpenedOnFirstUse
from iris_assets.definitions import build_definitions


def test_no_sensor_makes_a_registry_on_a_fresh_home_and_each_says_why_it_waits(settings):
    settings.mlflow_db.unlink()  # the fixture's home has a migrated registry; a fresh one has none
    defs = build_definitions(settings)
    said = {}
    with dg.instance_for_test() as instance:
        for sensor in defs.sensors:
            with dg.build_sensor_context(
                instance=instance, definitions=defs, resources=defs.resources
            ) as context:
                decision = sensor(context)
            assert isinstance(decision, dg.SkipReason), (sensor.name, decision)
            said[sensor.name] = decision.skip_message
    assert set(said) >= {"champion_approval_sensor", "notification_sensor", "retraining_sensor"}
    assert all(said.values()), said
    assert not settings.mlflow_db.exists(), "a sensor made an empty registry"
    how = said["champion_approval_sensor"]
    assert f"no registry yet at {settings.mlflow_db}" in how and "challenger_model" in how


def test_a_registry_opened_on_first_use_is_opened_once_and_only_when_asked():
    opened = []

    class Registry:
        def champion(self):
            return "1"

    def open_registry():
        opened.append(True)
        return Registry()

    models = OpenedOnFirstUse(open_registry)
    assert opened == []
    assert models.champion() == models.champion() == "1"
    assert opened == [True]
