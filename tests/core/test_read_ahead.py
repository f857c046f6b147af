"""core.read_ahead: the same items in order, errors where they happened, no reader left behind."""

import threading
import time

import pytest

from iris_assets.core.read_ahead import read_ahead


def test_items_come_in_order_and_the_reader_stays_at_most_depth_ahead():
    produced = []

    def items():
        for i in range(50):
            produced.append(i)
            yield i

    consumed = []
    for item in read_ahead(items(), depth=2):
        time.sleep(0.001)
        # Besides the one handed out: at most 2 waiting and 1 being read.
        assert len(produced) - len(consumed) <= 4
        consumed.append(item)
    assert consumed == list(range(50))


def test_an_error_while_reading_is_raised_after_the_items_before_it():
    def items():
        yield 1
        yield 2
        raise OSError("corrupt page")

    seen = []
    with pytest.raises(OSError, match="corrupt page"):
        for item in read_ahead(items()):
            seen.append(item)
    assert seen == [1, 2]


def test_a_consumer_that_stops_stops_the_reader_and_closes_its_source():
    closed = threading.Event()

    def items():
        try:
            yield from range(10**9)
        finally:
            closed.set()

    stream = read_ahead(items())
    assert next(stream) == 0
    before = {t.name for t in threading.enumerate()}
    assert "iris-read-ahead" in before
    stream.close()  # as a failing scoring step's generator is closed
    assert closed.is_set()
    assert "iris-read-ahead" not in {t.name for t in threading.enumerate()}


def test_a_consumer_that_raises_stops_the_reader():
    def items():
        yield from range(10**9)

    with pytest.raises(ValueError):
        for item in read_ahead(items()):
            if item == 3:
                raise ValueError("scoring failed")
    assert "iris-read-ahead" not in {t.name for t in threading.enumerate()}
