"""Review 13d: IRIS_CATALOG and IRIS_SCHEMA in upper case are refused, saying to use lower case.

Unity Catalog stores every object name in lower case, so ``Main`` would be created as ``main``
while this project's MLflow search filters, volume paths and run tags kept ``Main``: refused
where settings are read, on both targets, however Settings is made, naming the lower-case form.
"""

from __future__ import annotations

import dataclasses

import pytest

from iris_assets.resources import SettingsResource
from iris_assets.settings import SettingsError, load_settings


@pytest.mark.parametrize("target", ["local", "databricks"])
@pytest.mark.parametrize(
    "variable, value, upper",
    [
        ("IRIS_CATALOG", "Main", "'M'"),
        ("IRIS_SCHEMA", "ML", "'L', 'M'"),
        ("IRIS_SCHEMA", "iris_Dev", "'D'"),
        ("IRIS_CATALOG", "flores_Ñ", "'Ñ'"),
    ],
)
def test_an_upper_case_name_is_refused_saying_to_use_lower_case(variable, value, upper, target):
    with pytest.raises(SettingsError) as refused:
        load_settings({variable: value, "IRIS_TARGET": target})
    message = str(refused.value)
    assert message.startswith(
        f"{variable}={value!r} is not a Unity Catalog name: it holds upper-case {upper}, which "
        f"Unity Catalog stores in lower case (use {value.lower()!r})."
    ), message
    assert "lower-case letters, digits and underscores" in message


def test_upper_case_is_refused_however_settings_are_made():
    good = load_settings({"IRIS_CATALOG": "main", "IRIS_SCHEMA": "iris_ml-2"})
    with pytest.raises(SettingsError, match="IRIS_SCHEMA='Iris'.*use 'iris'"):
        dataclasses.replace(good, schema="Iris")
    resource = SettingsResource.from_settings(good).model_copy(update={"catalog": "Main"})
    with pytest.raises(SettingsError, match="IRIS_CATALOG='Main'"):
        resource.get()


def test_a_character_unity_catalog_refuses_is_named_before_upper_case():
    with pytest.raises(SettingsError, match=r"IRIS_CATALOG='Main\.x'.* it holds '\.'\."):
        load_settings({"IRIS_CATALOG": "Main.x"})


def test_lower_case_digits_underscores_and_hyphens_pass():
    settings = load_settings({"IRIS_CATALOG": "iris_dev", "IRIS_SCHEMA": "ml-2_ß"})
    assert settings.model_name == "iris_dev.ml-2_ß.iris_model"
