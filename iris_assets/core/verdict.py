"""The verdict rule: thresholds and the pass/fail judgement over held-out metrics.

Kept free of scikit-learn and pandas, because promotion re-derives the verdict from the
evaluation record inside the orchestrator (the approval sensor), not only inside the step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

JUDGED_METRICS = ("accuracy", "f1_macro")


@dataclass(frozen=True)
class Thresholds:
    """The bar a challenger must clear: a minimum quality and no regression against the champion.

    Defaults live in the ``evaluation_report`` asset's config, where users change them.
    """

    min_accuracy: float
    min_f1_macro: float
    max_regression: float


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return "passed" if self.passed else "failed: " + "; ".join(self.reasons)


def judge_metrics(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    thresholds: Thresholds,
) -> Verdict:
    reasons = []
    acc, f1 = challenger["accuracy"], challenger["f1_macro"]
    if acc < thresholds.min_accuracy:
        reasons.append(f"accuracy {acc:.4f} is below the minimum {thresholds.min_accuracy}")
    if f1 < thresholds.min_f1_macro:
        reasons.append(f"f1_macro {f1:.4f} is below the minimum {thresholds.min_f1_macro}")
    if champion is not None:
        for name in JUDGED_METRICS:
            drop = champion[name] - challenger[name]
            if drop > thresholds.max_regression:
                reasons.append(
                    f"{name} regresses by {drop:.4f} against the champion "
                    f"(tolerance {thresholds.max_regression})"
                )
    return Verdict(passed=not reasons, reasons=reasons)
