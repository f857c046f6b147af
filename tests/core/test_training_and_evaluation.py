import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris

from iris_assets.core.evaluation import (
    Thresholds,
    comparison_markdown,
    confusion_markdown,
    confusion_png,
    held_out_rows,
    judge,
    per_class_markdown,
    score_model,
)
from iris_assets.core.schema import FEATURE_COLUMNS, SPECIES_NAMES
from iris_assets.core.scoring import predict_frame
from iris_assets.core.split import assign_split
from iris_assets.core.training import TrainingError, TrainingParams, train_classifier

PARAMS = TrainingParams(C=1.0, max_iter=500, seed=42)
BAR = Thresholds(min_accuracy=0.9, min_f1_macro=0.9, max_regression=0.02)


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    iris = load_iris(as_frame=True)
    frame = iris.data.set_axis(list(FEATURE_COLUMNS), axis=1)
    frame.insert(0, "flower_id", np.arange(1, len(frame) + 1))
    frame["species"] = iris.target.astype("int64")
    frame["species_name"] = [SPECIES_NAMES[s] for s in frame["species"]]
    frame["split"] = assign_split(frame["flower_id"])
    return frame


class ConstantModel:
    def __init__(self, label):
        self.label = label

    def predict(self, rows):
        return np.full(len(rows), self.label)


def test_training_is_reproducible_and_sees_only_the_train_split(features):
    first, second = train_classifier(features, PARAMS), train_classifier(features, PARAMS)
    test = held_out_rows(features)
    assert (
        first.predict(test[list(FEATURE_COLUMNS)]) == second.predict(test[list(FEATURE_COLUMNS)])
    ).all()
    shuffled = features.sample(frac=1.0, random_state=1)
    third = train_classifier(shuffled, PARAMS)
    assert np.allclose(third[-1].coef_, first[-1].coef_)
    changed_test_labels = features.copy()
    changed_test_labels.loc[changed_test_labels["split"] == "test", "species"] = 0
    assert np.allclose(train_classifier(changed_test_labels, PARAMS)[-1].coef_, first[-1].coef_)


def test_training_refuses_a_single_species(features):
    with pytest.raises(TrainingError, match="2 species"):
        train_classifier(features[features["species"] == 0], PARAMS)


def test_a_good_model_passes_and_a_constant_one_fails_the_bar(features):
    test = held_out_rows(features)
    good = score_model(train_classifier(features, PARAMS), test)
    assert good.metrics["accuracy"] > 0.9 and good.rows == len(test)
    assert judge(good, None, BAR).passed
    bad = score_model(ConstantModel(0), test)
    verdict = judge(bad, None, BAR)
    assert not verdict.passed
    assert "accuracy" in verdict.summary and "below the minimum 0.9" in verdict.summary


def test_a_regression_against_the_champion_fails_even_above_the_bar(features):
    test = held_out_rows(features)
    champion = score_model(train_classifier(features, PARAMS), test)
    weaker = score_model(ConstantModel(0), test)
    lenient = Thresholds(min_accuracy=0.0, min_f1_macro=0.0, max_regression=0.02)
    verdict = judge(weaker, champion, lenient)
    assert not verdict.passed and "regresses" in verdict.summary
    assert judge(champion, champion, lenient).passed


def test_reports_render_side_by_side_tables(features):
    test = held_out_rows(features)
    scores = score_model(train_classifier(features, PARAMS), test)
    table = comparison_markdown(scores, scores, ("challenger v2", "champion v1"))
    assert "| metric | challenger v2 | champion v1 | delta |" in table
    assert "+0.0000" in table
    assert per_class_markdown(scores).count("\n") == 4
    assert "| setosa |" in confusion_markdown(scores)
    assert scores.confusion.sum() == len(test)


def test_the_confusion_matrix_is_drawn_as_a_png(features, tmp_path):
    # Also runs on the serverless environment (tests/databricks/test_serverless_env.py), where
    # the evaluate step draws it too: the runtime dependencies must bring matplotlib.
    scores = score_model(train_classifier(features, PARAMS), held_out_rows(features))
    png = confusion_png(scores, tmp_path / "confusion.png", "v1 held-out")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_scoring_gives_names_and_probabilities(features):
    model = train_classifier(features, PARAMS)
    out = predict_frame(model, held_out_rows(features))
    assert set(out["species_name"]) <= set(SPECIES_NAMES)
    assert out["probability"].between(1 / 3, 1).all()
    assert predict_frame(model, features.iloc[:0]).empty
