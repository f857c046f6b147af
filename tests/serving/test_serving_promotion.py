"""Promotion without downtime, through the path a promotion takes: ``ensure_serving`` (what the
``serving_endpoint`` asset calls) with each new champion while 8 connections keep scoring."""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from iris_assets.core.schema import FEATURE_COLUMNS
from iris_assets.serving.process import ServingProcess

if TYPE_CHECKING:
    from conftest import Registry

CONNECTIONS = 8
VERSIONS = ("1", "2", "3", "4")


@dataclass(frozen=True)
class Answer:
    sent_at: float
    status: int
    version: str | None
    predictions: list[int] | None


def test_three_promotions_under_load_fail_no_request(
    registry: Registry, tmp_path: Path, unused_port: int, warm_launcher
) -> None:
    X = registry.X[list(FEATURE_COLUMNS)]
    expected = {v: registry.estimators[v].predict(X) for v in VERSIONS}
    # Rows where a version disagrees with the one before it, plus a few others.
    changed = [np.flatnonzero(expected[a] != expected[b])[:4] for a, b in pairwise(VERSIONS)]
    rows = np.unique(np.concatenate([*changed, [0, 75, 149]]))
    body = json.dumps({"dataframe_records": X.iloc[rows].to_dict(orient="records")}).encode()
    answers = {v: expected[v][rows].tolist() for v in VERSIONS}

    # Forked from a warm worker, as the asset's server is: its start is not this test's subject.
    serving = ServingProcess(tmp_path / "serving", "127.0.0.1", unused_port, launcher=warm_launcher)
    url = serving.ensure_serving(registry.model_name, "1", env=registry.env(), timeout=60)
    pid = serving.status()["pid"]

    stop = threading.Event()
    per_connection: list[list[Answer]] = [[] for _ in range(CONNECTIONS)]
    failures: list[BaseException] = []

    def score(mine: list[Answer]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", unused_port, timeout=10)
        try:
            while not stop.is_set():
                sent_at = time.monotonic()
                conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                payload = json.loads(response.read())
                mine.append(
                    Answer(
                        sent_at,
                        response.status,
                        response.headers.get("X-Model-Version"),
                        payload.get("predictions"),
                    )
                )
        except BaseException as exc:
            failures.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=score, args=(mine,)) for mine in per_connection]
    promoted_at: dict[str, float] = {}
    try:
        for thread in threads:
            thread.start()
        for version in VERSIONS[1:]:
            time.sleep(0.3)
            assert serving.ensure_serving(registry.model_name, version, env=registry.env()) == url
            promoted_at[version] = time.monotonic()
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        status = serving.status()
        serving.stop(timeout=10)

    assert not failures
    # Swapped in place: the same process served every version.
    assert status["pid"] == pid and status["version"] == "4"
    everything = [answer for mine in per_connection for answer in mine]
    assert len(everything) > 100
    assert all(answer.status == 200 for answer in everything)
    assert {answer.version for answer in everything} == set(VERSIONS)
    # Every answer is exactly what the version named in its header predicts.
    assert all(answer.predictions == answers[answer.version] for answer in everything)
    for mine in per_connection:
        # A connection never goes back to an older version...
        served = [VERSIONS.index(answer.version) for answer in mine]
        assert served == sorted(served)
        # ...and once ensure_serving has returned, every new request gets the new champion.
        for version, at in promoted_at.items():
            later = [answer.version for answer in mine if answer.sent_at > at]
            assert all(VERSIONS.index(v) >= VERSIONS.index(version) for v in later)
