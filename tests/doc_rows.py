"""What the two test-written documents (docs/reliability.md, docs/detection.md) share: each
test's outcome for the last column, and the JSON-lines file of rows the tests appended."""

from __future__ import annotations

import json
import os
import tempfile

import pytest


class OutcomeLog:
    """Keeps each test's outcome (passed, failed, xfail, ...) for the document's last column."""

    def __init__(self) -> None:
        self.outcomes: dict[str, str] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if hasattr(report, "wasxfail"):
            self.outcomes[report.nodeid] = "xfail" if report.skipped else "XPASS"
        elif report.failed:
            self.outcomes[report.nodeid] = "failed"
        elif report.when == "call" or report.skipped:
            self.outcomes.setdefault(report.nodeid, report.outcome)


def take_rows(path: str, owned: bool) -> list[dict]:
    """The rows in `path`; the file is removed when this session created it."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    if owned:
        os.unlink(path)
    return rows


class RowFile:
    """Where one document's rows go in a pytest session: the file named by `env`, else a new
    temporary file (removed by `take`) for this session."""

    def __init__(self, env: str, prefix: str) -> None:
        self.env, self.prefix = env, prefix
        self._path = pytest.StashKey[str]()
        self._owned = pytest.StashKey[bool]()

    def path(self, config: pytest.Config) -> str:
        if self._path not in config.stash:
            path = os.environ.get(self.env)
            if not path:
                fd, path = tempfile.mkstemp(prefix=self.prefix, suffix=".jsonl")
                os.close(fd)
                config.stash[self._owned] = True
            config.stash[self._path] = path
        return config.stash[self._path]

    def used(self, config: pytest.Config) -> bool:
        """Whether a test of this document ran in the session."""
        return self._path in config.stash

    def take(self, config: pytest.Config) -> list[dict]:
        return take_rows(self.path(config), config.stash.get(self._owned, False))
