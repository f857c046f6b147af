"""IRIS_CATALOG and IRIS_SCHEMA become catalog.schema.table names and /Volumes/<catalog>/<schema>
paths: anything Unity Catalog would not accept as a name is refused where settings are read,
saying which variable and why, before a path outside the volumes can be built."""

from __future__ import annotations

import dataclasses

import pytest

from iris_assets.resources import SettingsResource
from iris_assets.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    "variable, value, why",
    [
        ("IRIS_CATALOG", "..", "holds '.'"),
        ("IRIS_CATALOG", "main/../other", "holds '.', '/'"),
        ("IRIS_CATALOG", "iris dev", "holds ' '"),
        ("IRIS_CATALOG", "", "is empty"),
        ("IRIS_SCHEMA", "ml.extra", "holds '.'"),
        ("IRIS_SCHEMA", "ml\n", "holds '\\n'"),
        ("IRIS_SCHEMA", "ml\x7f", "holds '\\x7f'"),
        ("IRIS_SCHEMA", "x" * 256, "is longer than 255 characters"),
    ],
)
def test_a_name_unity_catalog_refuses_is_refused_naming_the_variable(variable, value, why):
    with pytest.raises(SettingsError) as refused:
        load_settings({variable: value, "IRIS_TARGET": "databricks"})
    message = str(refused.value)
    assert message.startswith(f"{variable}={value!r} is not a Unity Catalog name: it {why}.")
    assert "letters, digits and underscores" in message


def test_no_volume_path_leaves_volumes_whichever_way_settings_are_made(tmp_path):
    good = load_settings({"IRIS_CATALOG": "main", "IRIS_SCHEMA": "iris_ml-2"})
    assert good.landing_volume == "/Volumes/main/iris_ml-2/landing"
    with pytest.raises(SettingsError, match="IRIS_SCHEMA='../../etc'"):
        dataclasses.replace(good, schema="../../etc")
    resource = SettingsResource.from_settings(good).model_copy(update={"catalog": "a/b"})
    with pytest.raises(SettingsError, match="IRIS_CATALOG='a/b'"):
        resource.get()


def test_names_up_to_the_limit_pass():
    settings = load_settings({"IRIS_CATALOG": "c" * 255, "IRIS_SCHEMA": "flowers_2026"})
    assert settings.pipes_volume == f"/Volumes/{'c' * 255}/flowers_2026/pipes"
