"""Review 13g: "the tick that gives up tells a person once" holds when a tick raises after
deciding the give-up (the daemon then keeps the old cursor): it is posted last, by a tick whose
cursor is kept, never by one that raises and would post it again next tick."""

import dagster as dg
import pytest

from iris_assets.assets import retraining
from iris_assets.core.notify import recent
from tests.assets.test_monitoring_retraining import retraining_tick, score
from tests.assets.test_retrain_attempts import start_and_end


def _given_up(settings):
    return [
        r
        for r in recent(settings.env_home, limit=50)
        if r["message"].get("event") == "retrain_given_up"
    ]


def _three_failed_attempts(graph, settings):
    """Three retrains of the labels of ``judged_day_of_150`` (the test's fixture), each failed."""
    cursor = None
    for _ in range(retraining.MAX_ATTEMPTS):
        request, cursor = retraining_tick(graph, cursor, with_cursor=True)
        assert isinstance(request, dg.RunRequest), request
        start_and_end(graph, request, "failed")
    return cursor


def test_a_give_up_is_told_once_when_the_tick_fails_after_telling(
    settings, graph, champion, judged_day_of_150, monkeypatch
):
    monkeypatch.delenv("IRIS_NOTIFY_URL", raising=False)
    cursor = _three_failed_attempts(graph, settings)
    # Other evidence on the same tick: a drift streak, so the tick goes on to look up the file.
    for day in ("2026-11-25", "2026-11-26", "2026-11-27"):
        score(graph, settings, day, rows=150, drift=True, seed=7)

    def lookup_fails(current):
        raise OSError("the labelled source could not be looked up")

    looked_up = retraining.missing_labelled_source
    monkeypatch.setattr(retraining, "missing_labelled_source", lookup_fails)
    for _ in range(2):  # the daemon keeps the stored cursor when a tick raises
        with pytest.raises(OSError):
            retraining_tick(graph, cursor)
    # Told only by a tick whose cursor is kept: a tick that raises posts nothing.
    assert len(_given_up(settings)) == 0, _given_up(settings)
    monkeypatch.setattr(retraining, "missing_labelled_source", looked_up)
    # The lookup works again: the drift retrains, and the labels' give-up is told on that tick.
    outcome, cursor = retraining_tick(graph, cursor, with_cursor=True)
    assert isinstance(outcome, dg.RunRequest), outcome
    assert "labels" not in outcome.tags["iris/retrain_reason"], outcome.tags
    assert len(_given_up(settings)) == 1, _given_up(settings)
    again = retraining_tick(graph, cursor)  # the drift's run is on its way; nothing told again
    assert again.skip_message.startswith("training_job ended 3 times"), again
    assert len(_given_up(settings)) == 1, _given_up(settings)
