"""Benchmarks only (pyproject's testpaths is `tests`, so the normal suite never loads this).

- `pytest benchmarks/` collects the bench_*.py files, which pytest's default pattern skips;
- the `rate` fixture turns a benchmark's median into figures such as MB/s, stored in
  `benchmark.extra_info` (and so in --benchmark-json) and printed at the end of the run.
"""

from __future__ import annotations

import pytest

_LINES = pytest.StashKey[list]()


def pytest_configure(config):
    config.stash[_LINES] = []


def pytest_collect_file(file_path, parent):
    # Files named on the command line are collected by pytest itself already.
    if (file_path.suffix == ".py" and file_path.name.startswith("bench_")
            and not parent.session.isinitpath(file_path)):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


@pytest.fixture
def rate(request, benchmark):
    """After `benchmark(...)`: `rate(MB_per_s=lambda median_s: ...)`; nothing when disabled."""

    def record(**figures):
        stats = getattr(benchmark, "stats", None)
        if not stats:
            return
        median = stats.stats.median
        name = request.node.nodeid.split("::", 1)[-1]
        for key, fn in figures.items():
            value = round(float(fn(median)), 3)
            benchmark.extra_info[key] = value
            request.config.stash[_LINES].append(f"{name:<58} {key} = {value:g}")

    return record


def pytest_terminal_summary(terminalreporter, config):
    lines = config.stash.get(_LINES, [])
    if lines:
        terminalreporter.section("throughput (from each benchmark's median)")
        for line in lines:
            terminalreporter.write_line(line)
