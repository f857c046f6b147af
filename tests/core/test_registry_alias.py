"""The registry's alias lookup (``ModelRegistry.by_alias``): one query, None when not there."""


def test_alias_lookup_is_none_without_the_model_or_the_alias_and_the_version_with_it(tmp_path):
    from iris_assets.core.registry import ModelRegistry
    from iris_assets.settings import load_settings

    settings = load_settings({"IRIS_HOME": str(tmp_path)})
    models = ModelRegistry(settings)
    assert models.champion() is None  # no registered model at all
    models.client.create_registered_model(settings.model_name)
    first = models.client.create_model_version(settings.model_name, (tmp_path / "m1").as_uri())
    models.client.create_model_version(settings.model_name, (tmp_path / "m2").as_uri())
    assert models.champion() is None  # a model, versions, but no champion alias
    models.set_alias("champion", first.version)
    champion = models.champion()
    assert champion is not None and champion.version == str(first.version)
    assert "champion" in champion.aliases and models.challenger() is None
