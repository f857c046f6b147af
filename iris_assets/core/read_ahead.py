"""Reading the next chunk of a day while the current one is scored: one thread, a bounded lead.

pyarrow decodes Parquet pages and converts them to pandas with the GIL released, so the read of
chunk n+1 overlaps validation, prediction and the Delta write of chunk n. At most ``depth``
chunks wait besides the one being read (memory stays bounded). An error while reading is raised
in the consumer where that chunk would have come, and a consumer that stops (scoring raised, the
stream was closed) stops the reader and closes what it was reading.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_ITEM, _ERROR, _END = "item", "error", "end"


def read_ahead(items: Iterable[T], depth: int = 1) -> Iterator[T]:
    """The items of ``items`` in order, produced by a thread that runs ``depth`` ahead."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[str, object]) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        source = iter(items)
        try:
            for item in source:
                if not put((_ITEM, item)):
                    return
            put((_END, None))
        except BaseException as exc:  # handed to the consumer, raised there
            put((_ERROR, exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    reader = threading.Thread(target=produce, name="iris-read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            kind, value = slots.get()
            if kind == _ITEM:
                yield value
            elif kind == _ERROR:
                raise value
            else:
                return
    finally:
        stop.set()
        reader.join()
