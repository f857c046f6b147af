"""A benchmark's Markdown results file that keeps every run: the newest section goes first.

``make bench-lifecycle`` and ``make bench-batch`` used to write their file whole, so each run
erased the earlier sessions' measurements kept below it (what the issue's before-and-after
rests on). ``record`` puts a run's section under the file's title, headed with when it ran and
the code it measured (the benches pass ``iris_assets.version.git_version``: the commit, and a
hash of uncommitted changes), and keeps everything that was there below it. The file is
replaced in one step (a temporary file renamed over it): a run killed while writing leaves the
old file.
"""

from __future__ import annotations

import datetime
import os
import tempfile
from pathlib import Path


def record(
    path: Path,
    title: str,
    body: str,
    commit: str,
    now: datetime.datetime | None = None,
) -> str:
    """Put ``body`` first in ``path`` (after its ``# title`` line) as a section of its own,
    keeping what the file held below it. Returns the section's heading."""
    now = now or datetime.datetime.now(datetime.UTC)
    heading = f"## Run of {now:%Y-%m-%d %H:%M} UTC, at `{commit}`"
    earlier = path.read_text() if path.exists() else ""
    lines = earlier.splitlines()
    if lines and lines[0] == f"# {title}":
        earlier = "\n".join(lines[1:]).lstrip("\n")
    text = f"# {title}\n\n{heading}\n\n{body.strip()}\n"
    if earlier.strip():
        text += f"\n{earlier.rstrip()}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return heading
