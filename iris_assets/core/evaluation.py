"""Evaluation: held-out metrics, the challenger-vs-champion comparison and the pass/fail verdict."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
)

from iris_assets.core.schema import FEATURE_COLUMNS, LABEL, SPECIES_NAMES, TEST
from iris_assets.core.verdict import Thresholds, Verdict, judge_metrics

METRIC_NAMES = ("accuracy", "f1_macro", "precision_macro", "recall_macro")
LABELS = list(range(len(SPECIES_NAMES)))


@dataclass(frozen=True)
class Scores:
    metrics: dict[str, float]
    per_class: pd.DataFrame
    confusion: np.ndarray
    rows: int


def held_out_rows(features: pd.DataFrame) -> pd.DataFrame:
    return features[features["split"] == TEST].sort_values("flower_id")


def score_model(model, test_rows: pd.DataFrame) -> Scores:
    """Score ``model`` (anything with ``predict``) on labelled held-out rows."""
    if test_rows.empty:
        raise ValueError("the held-out split is empty: nothing to evaluate on")
    truth = test_rows[LABEL].astype("int64").to_numpy()
    predicted = np.asarray(model.predict(test_rows[list(FEATURE_COLUMNS)])).astype("int64")
    metrics = {
        "accuracy": accuracy_score(truth, predicted),
        "f1_macro": f1_score(truth, predicted, average="macro", labels=LABELS, zero_division=0),
        "precision_macro": precision_score(
            truth, predicted, average="macro", labels=LABELS, zero_division=0
        ),
        "recall_macro": recall_score(
            truth, predicted, average="macro", labels=LABELS, zero_division=0
        ),
    }
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=LABELS, zero_division=0
    )
    per_class = pd.DataFrame(
        {
            "species": list(SPECIES_NAMES),
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": support,
        }
    )
    return Scores(
        metrics={k: round(float(v), 4) for k, v in metrics.items()},
        per_class=per_class,
        confusion=confusion_matrix(truth, predicted, labels=LABELS),
        rows=len(test_rows),
    )


def judge(challenger: Scores, champion: Scores | None, thresholds: Thresholds) -> Verdict:
    return judge_metrics(challenger.metrics, champion.metrics if champion else None, thresholds)


def comparison_markdown(challenger: Scores, champion: Scores | None, labels: tuple[str, str]):
    """Side-by-side metrics table (challenger, champion, delta) in Markdown."""
    challenger_label, champion_label = labels
    if champion is None:
        lines = [f"| metric | {challenger_label} |", "|---|---|"]
        lines += [f"| {m} | {challenger.metrics[m]:.4f} |" for m in METRIC_NAMES]
        return "\n".join(lines)
    lines = [f"| metric | {challenger_label} | {champion_label} | delta |", "|---|---|---|---|"]
    for m in METRIC_NAMES:
        new, old = challenger.metrics[m], champion.metrics[m]
        lines.append(f"| {m} | {new:.4f} | {old:.4f} | {new - old:+.4f} |")
    return "\n".join(lines)


def per_class_markdown(scores: Scores) -> str:
    lines = ["| species | precision | recall | f1 | support |", "|---|---|---|---|---|"]
    for row in scores.per_class.itertuples(index=False):
        lines.append(
            f"| {row.species} | {row.precision:.3f} | {row.recall:.3f} | {row.f1:.3f} "
            f"| {row.support} |"
        )
    return "\n".join(lines)


def confusion_markdown(scores: Scores) -> str:
    header = "| true \\ predicted | " + " | ".join(SPECIES_NAMES) + " |"
    lines = [header, "|---" * (len(SPECIES_NAMES) + 1) + "|"]
    for name, row in zip(SPECIES_NAMES, scores.confusion, strict=True):
        lines.append(f"| {name} | " + " | ".join(str(int(v)) for v in row) + " |")
    return "\n".join(lines)


def confusion_png(scores: Scores, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(scores.confusion, cmap="Blues")
    ax.set_xticks(LABELS, SPECIES_NAMES)
    ax.set_yticks(LABELS, SPECIES_NAMES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for (i, j), value in np.ndenumerate(scores.confusion):
        ax.text(j, i, int(value), ha="center", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
