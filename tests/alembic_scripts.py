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

import importlib.abc
import importlib.util
import sys
from pathlib import Path

_shared: dict[tuple, object] = {}
SCRIPTS_MODULE = "alembic.script.base"


def share_revision_maps() -> bool:
    """Make every ``ScriptDirectory`` of the same folders share one revision map, as soon as
    alembic's scripts module is imported (a process that never imports it, the inner pytest
    runs of tests/ui, does not pay alembic's import for it); False where alembic is not
    installed (the env-5 run of the core tests)."""
    if SCRIPTS_MODULE in sys.modules:
        _share(sys.modules[SCRIPTS_MODULE].ScriptDirectory)
        return True
    try:
        found = importlib.util.find_spec("alembic")
    except (ImportError, ValueError):
        found = None
    if found is None:
        return False
    if not any(isinstance(finder, _ShareOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _ShareOnImport())
    return True


class _ShareOnImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: when alembic's scripts module is imported, it has the other
    finders find it and shares the maps right after the module ran."""

    def find_spec(self, name, path=None, target=None):
        if name != SCRIPTS_MODULE:
            return None
        sys.meta_path.remove(self)  # once: the other finders find the module
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            _share(module.ScriptDirectory)

        spec.loader.exec_module = exec_module
        return spec


def _share(ScriptDirectory) -> None:  # noqa: N803 - the class itself
    if getattr(ScriptDirectory.__init__, "_iris_shared", False):
        return
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
