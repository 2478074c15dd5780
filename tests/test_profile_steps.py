"""benchmarks/profile_steps.py: how py-spy's collapsed stacks are split and counted.

The lines below follow what `py-spy record --subprocesses --threads --format raw` wrote for an
offload of the benchmark card (process chain, then the thread, then the Python frames).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import profile_steps  # noqa: E402

MAIN = 'process 100:"python ingest offload --jobs 2 CARD DEST"'
WORKER = 'process 101:"python -m loky.backend.popen_loky_posix --process-name LokyProcess-1"'
TRACKER = 'process 102:"python -c from loky.backend.resource_tracker import main"'
RAW_LINES = [
    f"{MAIN};thread (100): MainThread;<module> (ingest:6);offload (ingest/pipeline.py:97);"
    "_prove (ingest/copier.py:282);FileIO.read (ingest/fsio.py:63) 30",
    f"{MAIN};thread (100): MainThread;<module> (ingest:6);offload (ingest/pipeline.py:99);"
    "_prove (ingest/copier.py:283);uncached_hash (ingest/fsio.py:99) 10",
    f"{MAIN};thread (105);Thread._bootstrap (threading.py:1002);"
    "Thread.run (threading.py:982);DecodePool._pump_loop (ingest/decode/pool.py:210) 5",
    f"{MAIN};thread (106): read-back_0;Thread._bootstrap (threading.py:1002);"
    "uncached_hash (ingest/fsio.py:99) 7",
    f"{MAIN};thread (100);<module> (ingest:3);<module> (ingest/cli.py:8) 3",
    f"{MAIN};{WORKER};thread (101): MainThread;run_task (ingest/decode/task.py:54);"
    "verify_raw (ingest/decode/raw.py:675) 200",
    f"{MAIN};{WORKER};thread (101): MainThread;run_task (ingest/decode/task.py:68);"
    "verify_jpeg (ingest/decode/jpeg.py:113) 40",
    f"{MAIN};{TRACKER};thread (102): MainThread;main (loky/backend/resource_tracker.py:1) 2",
    "a line py-spy did not write",
]


def read(tmp_path: Path, rate: int = 100) -> profile_steps.Profile:
    raw = tmp_path / "d1.txt"
    raw.write_text("\n".join(RAW_LINES) + "\n")
    return profile_steps.Profile.read(raw, rate, ("ingest/",))


def test_samples_are_split_by_process_role(tmp_path):
    prof = read(tmp_path)
    assert dict(prof.samples) == {"main": 55, "decode workers": 240, "other": 2}
    assert prof.seconds(prof.samples["decode workers"]) == 2.4


def test_main_threads_are_named_by_python_or_by_what_they_run(tmp_path):
    prof = read(tmp_path)
    # The unnamed thread at <module> is the main thread, sampled before its name was known.
    assert dict(prof.threads) == {"MainThread": 43, "DecodePool._pump_loop": 5,
                                  "read-back_0": 7}


def test_inclusive_counts_a_function_once_per_sample_whatever_its_lines(tmp_path):
    prof = read(tmp_path)
    main = prof.inclusive["main"]
    # _prove ran at two lines in two stacks: 30 + 10 samples, under one name.
    assert main["_prove (ingest/copier.py)"] == 40
    assert main["uncached_hash (ingest/fsio.py)"] == 17
    assert main["offload (ingest/pipeline.py)"] == 40
    assert "<module> (ingest)" not in main  # the console script is not one of ours
    workers = prof.inclusive["decode workers"]
    assert workers["run_task (ingest/decode/task.py)"] == 240
    assert workers["verify_raw (ingest/decode/raw.py)"] == 200


def test_leaves_keep_their_line(tmp_path):
    prof = read(tmp_path)
    assert prof.leaves["decode workers"].most_common(1) == [
        ("verify_raw (ingest/decode/raw.py:675)", 200)]
    assert prof.leaves["main"]["FileIO.read (ingest/fsio.py:63)"] == 30


def test_no_line():
    assert profile_steps._no_line("f (ingest/x.py:12)") == "f (ingest/x.py)"
    assert profile_steps._no_line("<module> (ingest:6)") == "<module> (ingest)"
    assert profile_steps._no_line("thread (101)") == "thread (101)"


def test_report_names_the_main_threads_call_chain_once(tmp_path, capsys):
    raw = tmp_path / "e.txt"
    chain = f"{MAIN};thread (100): MainThread;main (ingest/cli.py:166);offload (ingest/api.py:36)"
    raw.write_text(f"{chain};_prove (ingest/copier.py:282);FileIO.read (ingest/fsio.py:63) 60\n"
                   f"{chain};FileIO.write (ingest/fsio.py:71) 35\n"
                   f"{MAIN};thread (106): read-back_0;uncached_hash (ingest/fsio.py:99) 5\n")
    prof = profile_steps.Profile.read(raw, 100, ("ingest/",))
    tree = profile_steps.Tree({100: ("main", 1.0, 2.0), 99: ("py-spy", 0.1, 0.2)})
    profile_steps.report("e", 4.0, 0, tree, 0.0, prof)
    out = capsys.readouterr().out
    assert "main 3.00 (user 1.00, sys 2.00)" in out
    # The chain is judged on the main thread (95 samples), not diluted by other threads.
    assert "main, main thread's call chain (0.95 s): main (cli.py) > offload (api.py)" in out
    inclusive = out.split("main, inclusive")[1].split("main, leaf")[0]
    assert "0.60  _prove (ingest/copier.py)" in inclusive
    assert "0.05  uncached_hash (ingest/fsio.py)" in inclusive
    assert "main (ingest/cli.py)" not in inclusive


def test_a_chain_that_is_everything_keeps_its_deepest_frame_listed(tmp_path):
    raw = tmp_path / "b.txt"
    raw.write_text(f"{MAIN};{WORKER};thread (101): MainThread;decode_one (<dynamic-code>:118) 9\n")
    prof = profile_steps.Profile.read(raw, 100, ("decode_one (",))
    assert prof.chain("decode workers") == []
    assert prof.inclusive["decode workers"]["decode_one (<dynamic-code>)"] == 9


def test_real_py_spy_lines(tmp_path):
    """Seven stacks as py-spy 0.4 wrote them for d1 (tests/profiles/d1-pyspy-raw.txt)."""
    raw = Path(__file__).parent / "profiles" / "d1-pyspy-raw.txt"
    prof = profile_steps.Profile.read(raw, 50, ("ingest/",))
    assert dict(prof.samples) == {"main": 179, "decode workers": 955, "other": 3}
    assert dict(prof.threads) == {"MainThread": 139, "read-back_0": 11, "decode-pump": 29}
    main_chain = prof.chain("main")
    assert "offload (ingest/pipeline.py)" in main_chain
    assert "FileIO.read (ingest/fsio.py)" not in main_chain
    assert prof.chain("decode workers")[:1] == ["run_task (ingest/decode/task.py)"]
    workers = prof.inclusive["decode workers"]
    assert workers["verify_raw (ingest/decode/raw.py)"] == 856
    assert workers["verify_jpeg (ingest/decode/jpeg.py)"] == 99
    assert prof.leaves["main"]["FileIO.read (ingest/fsio.py:63)"] == 62  # card and read-back
