"""Live model performance: a day's predictions judged against the labels that have arrived.

Per observed day and model version: accuracy, macro F1, per-class recall and coverage (labelled /
scored). The decay rule (``judge_decay``) is one-sided and conservative, because labels arrive a
few at a time and a handful of unlucky ones must not page anybody:

- below ``min_labelled`` labelled rows there is no verdict (too few to say anything);
- otherwise the model has decayed only when the **upper** end of the one-sided Wilson score
  interval for its accuracy (confidence ``confidence``, z = 1.645 at 95%) is below
  ``min_accuracy - margin``: "we are 95% sure live accuracy is more than ``margin`` under the
  evaluation bar". Against a 0.90 bar and a 0.05 margin that is an observed accuracy of at most
  0.733 on 30 labels (22 right), 0.79 on 100 and 0.805 on 200 (docs/monitoring.md).

The Wilson interval (rather than the normal approximation) stays inside [0, 1] and is honest at
the small counts and the accuracies near 1 this model lives at.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd
import pyarrow as pa

from iris_assets.core.schema import LABEL, SPECIES_NAMES, UTC_TIMESTAMP, TableSpec

RECALL_COLUMNS = tuple(f"recall_{name}" for name in SPECIES_NAMES)

PERFORMANCE_TABLE_SCHEMA = pa.schema(
    [
        pa.field("observed_date", pa.string(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("scored_rows", pa.int64(), nullable=False),
        pa.field("labelled_rows", pa.int64(), nullable=False),
        pa.field("coverage", pa.float64(), nullable=False),
        pa.field("accuracy", pa.float64(), nullable=True),
        pa.field("accuracy_lower", pa.float64(), nullable=True),
        pa.field("accuracy_upper", pa.float64(), nullable=True),
        pa.field("f1_macro", pa.float64(), nullable=True),
        *(pa.field(c, pa.float64(), nullable=True) for c in RECALL_COLUMNS),
        pa.field("computed_at", UTC_TIMESTAMP, nullable=False),
    ]
)
PERFORMANCE_TABLE = TableSpec(PERFORMANCE_TABLE_SCHEMA, partition_by=("observed_date",))


@dataclass(frozen=True)
class DecayPolicy:
    """When live accuracy counts as decayed (see the module docstring)."""

    min_accuracy: float = 0.9  # the evaluation bar (EvaluationConfig.min_accuracy)
    margin: float = 0.05
    min_labelled: int = 30
    confidence: float = 0.95

    def __post_init__(self):
        bounds = {
            "min_accuracy": 0.0 < self.min_accuracy <= 1.0,
            "margin": 0.0 <= self.margin < 1.0,
            "min_labelled": isinstance(self.min_labelled, int) and self.min_labelled >= 1,
            "confidence": 0.5 < self.confidence < 1.0,
        }
        wrong = [name for name, ok in bounds.items() if not ok]
        if wrong:
            given = ", ".join(f"{name}={getattr(self, name)!r}" for name in wrong)
            raise ValueError(
                f"decay policy out of bounds ({given}): min_accuracy in (0, 1], margin in [0, 1), "
                "min_labelled >= 1, confidence in (0.5, 1)"
            )

    @property
    def floor(self) -> float:
        return self.min_accuracy - self.margin


def wilson_interval(correct: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """One-sided Wilson score bounds (lower, upper) for ``correct`` out of ``total``.

    Each bound holds with probability ``confidence`` on its own side.
    """
    if total <= 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(confidence)
    p = correct / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Decay:
    decayed: bool
    judged: bool  # False: too few labelled rows for a verdict
    summary: str


def judge_decay(row: dict, policy: DecayPolicy) -> Decay:
    """The decay verdict for one performance row (a day and model version)."""
    labelled, version = int(row["labelled_rows"]), row["model_version"]
    if labelled < policy.min_labelled:
        return Decay(
            False,
            False,
            f"v{version}: {labelled} labelled rows, fewer than the {policy.min_labelled} needed "
            "to judge live accuracy: no verdict yet",
        )
    accuracy, upper = float(row["accuracy"]), float(row["accuracy_upper"])
    decayed = upper < policy.floor
    relation = "below" if decayed else "not below"
    return Decay(
        decayed,
        True,
        f"v{version}: live accuracy {accuracy:.3f} on {labelled} labels "
        f"({policy.confidence:.0%} upper bound {upper:.3f}) is {relation} the bar "
        f"{policy.min_accuracy:.2f} minus margin {policy.margin:.2f} = {policy.floor:.2f}",
    )


def day_performance(
    day: str,
    scored_by_version: dict[str, int],
    labelled: pd.DataFrame,
    computed_at,
    confidence=0.95,
) -> pd.DataFrame:
    """One performance row per model version that scored ``day`` (``PERFORMANCE_TABLE_SCHEMA``).

    ``labelled`` has ``model_version``, ``prediction`` and ``species`` per labelled flower.
    """
    from sklearn.metrics import f1_score, recall_score

    classes = list(range(len(SPECIES_NAMES)))
    rows = []
    for version, scored in sorted(scored_by_version.items()):
        mine = labelled[labelled["model_version"] == version]
        truth = mine[LABEL].to_numpy(dtype=np.int64)
        predicted = mine["prediction"].to_numpy(dtype=np.int64)
        n = len(mine)
        row = {
            "observed_date": day,
            "model_version": version,
            "scored_rows": int(scored),
            "labelled_rows": n,
            "coverage": n / scored if scored else 0.0,
            "accuracy": None,
            "accuracy_lower": None,
            "accuracy_upper": None,
            "f1_macro": None,
            **{c: None for c in RECALL_COLUMNS},
            "computed_at": computed_at,
        }
        if n:
            correct = int((truth == predicted).sum())
            lower, upper = wilson_interval(correct, n, confidence)
            present = sorted(set(truth) | set(predicted))  # a species nobody saw has no F1
            recalls = recall_score(truth, predicted, labels=classes, average=None, zero_division=0)
            row.update(
                accuracy=correct / n,
                accuracy_lower=lower,
                accuracy_upper=upper,
                f1_macro=float(
                    f1_score(truth, predicted, labels=present, average="macro", zero_division=0)
                ),
            )
            for k, column in enumerate(RECALL_COLUMNS):
                if (truth == k).any():
                    row[column] = float(recalls[k])
        rows.append(row)
    frame = pd.DataFrame(rows, columns=PERFORMANCE_TABLE_SCHEMA.names)
    return frame


def _number(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def trend_markdown(history: pd.DataFrame, policy: DecayPolicy, days: int = 14) -> str:
    """The last ``days`` observed days as a Markdown table, newest first, with a bar per day."""
    if history.empty:
        return "no performance rows yet"
    recent = sorted(history["observed_date"].unique())[-days:]
    rows = history[history["observed_date"].isin(recent)].sort_values(
        ["observed_date", "model_version"], ascending=[False, True]
    )
    lines = [
        f"Live accuracy, last {len(recent)} days (bar {policy.min_accuracy:.2f}, decay below "
        f"{policy.floor:.2f} at {policy.confidence:.0%} confidence, >= {policy.min_labelled} "
        "labels)",
        "",
        "| day | version | labelled / scored | coverage | accuracy | 95% interval | | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows.to_dict("records"):
        verdict = judge_decay(row, policy)
        state = "DECAYED" if verdict.decayed else ("ok" if verdict.judged else "too few labels")
        accuracy = row["accuracy"]
        has_accuracy = accuracy is not None and not pd.isna(accuracy)
        bar = "#" * round(10 * accuracy) if has_accuracy else ""
        lines.append(
            f"| {row['observed_date']} | v{row['model_version']} | {row['labelled_rows']} / "
            f"{row['scored_rows']} | {_number(row['coverage'], 2)} | {_number(accuracy)} | "
            f"{_number(row['accuracy_lower'])}-{_number(row['accuracy_upper'])} | `{bar:<10}` "
            f"| {state} |"
        )
    return "\n".join(lines)
