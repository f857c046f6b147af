"""One parse of each alembic migration folder per test process.

Dagster's sqlite storage checks a database's schema revision against its migration scripts
each time it opens one it has not checked: every run's own event database, and each new
instance's run, schedule and index databases (an asset test makes dozens). Every check built a
new ``ScriptDirectory``, which read and compiled every script of the folder again: about a tenth
of an asset test's CPU (bench/results/tests.md). The scripts are the installed packages' own
files, unchanged while the tests run, so every ``ScriptDirectory`` of one folder here shares one
revision map, made from the first parse: each database is still checked, created and stamped
by Dagster's and MLflow's own code, against exactly the revisions a fresh parse finds.
"""

from __future__ import annotations

from pathlib import Path

_shared: dict[tuple, object] = {}


def share_revision_maps() -> bool:
    """Make every ``ScriptDirectory`` of the same folders share one revision map; False where
    alembic is not installed (the env-5 run of the core tests)."""
    try:
        from alembic.script.base import ScriptDirectory
    except ImportError:
        return False
    if getattr(ScriptDirectory.__init__, "_iris_shared", False):
        return True
    parse = ScriptDirectory.__init__

    def __init__(self, *args, **kwargs):
        parse(self, *args, **kwargs)
        # Resolved: a relative location names another folder from another working directory.
        key = (
            Path(self.dir).resolve(),
            tuple(Path(location).resolve() for location in self.version_locations),
            self.sourceless,
            self.recursive_version_locations,
        )
        self.revision_map = _shared.setdefault(key, self.revision_map)

    __init__._iris_shared = True
    ScriptDirectory.__init__ = __init__
    return True
