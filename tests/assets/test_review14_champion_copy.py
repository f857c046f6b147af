"""Review 14: a test's copy of the session's champion home reads and writes only its own files
(the template is made once per session and shared by every test that asks for ``champion``)."""

import hashlib
from pathlib import Path


def fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_a_champion_copy_works_without_the_template_and_leaves_it_as_it_was(
    settings, graph, champion, champion_template
):
    import mlflow.sklearn

    from iris_assets.core.registry import ModelRegistry
    from iris_assets.core.tables import DeltaTableStore

    before = fingerprint(champion_template)
    aside = champion_template.with_name(champion_template.name + "-aside")
    champion_template.rename(aside)  # a read of the template's files now fails
    try:
        registry = ModelRegistry(settings)
        model = mlflow.sklearn.load_model(registry.champion().uri)
        assert hasattr(model, "predict_proba")
        assert len(DeltaTableStore(settings.warehouse).read(settings.feature_table)) > 0
        registry.set_alias("challenger", "1")  # writes go to this test's registry
    finally:
        aside.rename(champion_template)
    assert fingerprint(champion_template) == before
