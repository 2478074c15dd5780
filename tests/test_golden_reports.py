"""Golden files of the `ingest-report/1` JSON report of `offload`, `verify` and `status`: the
whole report, key order included, frozen before issue 22 restructures the code beneath it
(a Store protocol, one verify loop, one catalog module). Any change to what a script parsing
the report sees fails here with a unified diff.

Each command runs as the CLI runs it (the same library calls, the JSON written by
`ingest.report.json_report.write_json` to the `--json` file, which the test reads back), with
two things injected the way the other tests inject them: a stepping clock, so that every
timestamp is fixed, and `device_of`, so that the card, the local disks and therefore the
safe-to-format verdicts do not depend on how this machine's file systems are mounted. What
still differs between runs or machines is normalised by `normalise` below, one commented rule
each; nothing else is.

`INGEST_WRITE_GOLDEN=1` rewrites tests/golden/*.json from the code as it is; review the diff.
S3 cases run against moto's S3 server on loopback, as tests/test_s3.py does, and skip without
s3fs or moto.
"""

from __future__ import annotations

import difflib
import importlib.util
import itertools
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rigs.s3 import moto_server

from ingest import api
from ingest.report.json_report import dumps, write_json
from ingest.status import card_status
from ingest.verify import VerifyConfig
from ingest.verify.run import verify

GOLDEN = Path(__file__).resolve().parent / "golden"
WRITE = os.environ.get("INGEST_WRITE_GOLDEN") == "1"

HAVE_S3 = all(importlib.util.find_spec(m) for m in ("s3fs", "moto"))
S3_REASON = ("s3fs or moto is not installed (pip install 'ingest[s3]' 'moto[server]'; the test "
             "extras include both)")
needs_s3 = pytest.mark.skipif(not HAVE_S3, reason=S3_REASON)

KEY_ID = "AKIAINGESTTESTKEY042"
SECRET = "ingest-test-secret-Zq9vW2xK7pLm4Rt8"

# Simulated devices (ids no mount table holds), as tests/test_status.py uses: the card on its
# own device, each local destination on a disk of its own.
CARD_DEV = os.makedev(4001, 1)
DISK_1, DISK_2 = os.makedev(4002, 1), os.makedev(4003, 1)

# The small card: picked from the project's generated card (fixtures/card.py, seed 7).
CARD_FILES = [
    "DCIM/100NIKON/DSC_0001.JPG",  # a good JPEG
    "DCIM/100NIKON/DSC_0002.DNG",  # a good RAW with an embedded JPEG preview ...
    "DCIM/100NIKON/DSC_0002.XMP",  # ... and its sidecar
    "DCIM/100NIKON/DSC_0003.DNG",  # a RAW+JPEG pair
    "DCIM/100NIKON/DSC_0003.JPG",
    "DCIM/100CANON/DSC_0001.JPG",  # the other camera: same name, same day as Nikon's 0001
    "DCIM/101NIKON/DSC_0013.JPG",  # damaged on the card (fixtures/card.py `_damage_scan`)
]
CLUTTER = [".Trashes/._.Trashes", "DCIM/100NIKON/._DSC_0001.JPG"]  # skipped system files
# The same content as DSC_0001.JPG under a second name on the card.
DUPLICATE = ("DCIM/100NIKON/DSC_0001.JPG", "DCIM/100NIKON/DSC_0009.JPG")
DAMAGED = "DCIM/101NIKON/DSC_0013.JPG"


# --- the clock --------------------------------------------------------------------------------
class FixedClock:
    """Always the same time."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class SteppingClock:
    """Each call returns the previous time + 1 s, from a fixed start: every timestamp in a
    report is fixed by how many times the run asked for the time, which is behaviour."""

    START = datetime(2030, 1, 1, 3, 0, tzinfo=UTC)

    def __init__(self, start: datetime = START) -> None:
        self._calls = itertools.count()
        self._start = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._start + timedelta(seconds=next(self._calls))


# --- the card ---------------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def utc_zone():
    """The generator sets each mtime from the capture time read as local time (as a camera's
    FAT clock does), and mtimes are in the report: build and run in UTC on every machine."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TZ", "UTC")
        time.tzset()
        try:
            yield
        finally:
            mp.undo()
            time.tzset()


@pytest.fixture(scope="module")
def card_template(tmp_path_factory, utc_zone) -> Path:
    from fixtures.card import build_card

    full = tmp_path_factory.mktemp("golden-full-card")
    manifest = build_card(full, seed=7, damaged=True)
    assert manifest.damaged == [DAMAGED]
    small = tmp_path_factory.mktemp("golden-card")
    for rel in CARD_FILES + CLUTTER:
        (small / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(full / rel, small / rel)  # mtimes kept
    shutil.copy2(small / DUPLICATE[0], small / DUPLICATE[1])
    return small


@pytest.fixture()
def card(card_template, tmp_path) -> Path:
    dst = tmp_path / "card"
    shutil.copytree(card_template, dst)
    return dst


def local_dests(tmp_path: Path, *names: str) -> list[Path]:
    out = [tmp_path / n for n in names]
    for d in out:
        d.mkdir()
    return out


def devices(card: Path, disks: dict[Path, int]):
    """device_of: the card on its own device, `disks` as given, everything else as it is
    (tests/test_status.py's `devices`)."""
    roots = {Path(os.path.realpath(card)): CARD_DEV}
    roots.update({Path(os.path.realpath(p)): dev for p, dev in disks.items()})

    def device_of(path: str) -> int:
        p = Path(path)
        for root, dev in roots.items():
            if p == root or root in p.parents:
                os.stat(path)  # a missing file must still fail as it would for real
                return dev
        return os.stat(path).st_dev

    return device_of


# --- S3 on loopback (tests/test_s3.py's fixtures) -----------------------------------------------
@pytest.fixture(scope="module")
def endpoint():
    if not HAVE_S3:
        pytest.skip(S3_REASON)
    with moto_server(KEY_ID, SECRET) as (endpoint, _server):
        yield endpoint


def make_bucket(endpoint: str, name: str) -> str:
    """A bucket of a fixed name (one per test: the server lives for the module), so that the
    name in the report is behaviour, not a random token."""
    from ingest.store.s3 import make_filesystem

    make_filesystem(endpoint).call_s3("create_bucket", Bucket=name)
    return name


# --- normalisation ------------------------------------------------------------------------------
SESSION = re.compile(r"(\d{8}T\d{6}Z-)[0-9a-f]{6}")
VERSION = re.compile(r"\d+(?:\.\d+)+[\w.+-]*")


class Normaliser:
    """Replaces what legitimately differs between runs and machines by placeholders; every
    other value, and the order of every key, is compared as written."""

    def __init__(self, tmp: Path, endpoint: str | None = None,
                 local_devices: tuple[int, ...] = ()) -> None:
        # Temporary directories: pytest picks a new root per run (pytest-N, test name + N),
        # and the card and destinations live under it. Both spellings: some paths are
        # resolved (realpath), some are as given.
        self.paths = sorted({str(tmp), os.path.realpath(tmp)}, key=len, reverse=True)
        self.endpoint = endpoint
        self.local_devices = set(local_devices)
        self.s3_devices: set[int] = set()

    def add_s3_device(self, bucket: str) -> None:
        from ingest.safety import store_device_id

        self.s3_devices.add(store_device_id(f"s3 {self.endpoint}/{bucket}"))

    def text(self, s: str) -> str:
        for p in self.paths:
            s = s.replace(p, "<TMP>")
        if self.endpoint:
            # moto's server listens on a port picked free on each run.
            s = s.replace(self.endpoint, "<S3_ENDPOINT>")
        # A session name is the start time (fixed by the clock) and 3 random bytes
        # (secrets.token_hex): the random part is not behaviour.
        return SESSION.sub(r"\1<TOKEN>", s)

    def __call__(self, value, key: str | None = None, depth: int = 0):
        if isinstance(value, dict):
            if key == "versions" and depth == 1:
                # The versions of the decoders installed here (rawpy, LibRaw, simplejpeg,
                # Pillow): which ones are named is behaviour, their numbers are the machine's.
                # `ingest` is this project's own version and stays exact.
                return {k: v if k == "ingest" or not isinstance(v, str) or
                        not VERSION.fullmatch(v) else "<VERSION>" for k, v in value.items()}
            return {k: self(v, k, depth + 1) for k, v in value.items()}
        if isinstance(value, list):
            return [self(v, key, depth + 1) for v in value]
        if isinstance(value, str):
            if key == "decoder":
                # "simplejpeg 1.9.0 (libjpeg-turbo 3.1.2)": the same installed versions.
                value = VERSION.sub("<VERSION>", value)
            return self.text(value)
        if isinstance(value, bool) or value is None:
            return value
        if key == "seconds" and depth > 1 and isinstance(value, int | float):
            # Below the top level, `seconds` is wall time measured with perf_counter or
            # monotonic (a file's copy, its decode, a catalog rebuild): it is how busy the
            # machine was. The top-level `seconds` is finished - started by the injected
            # clock, and stays exact.
            return "<SECONDS>"
        if key in ("device", "device_id") and isinstance(value, int):
            # st_dev of the temporary folders: the number this machine's kernel gave the file
            # system (the safe-to-format rule reads devices through the injected device_of).
            if value in self.local_devices:
                return "<ST_DEV>"
            # An object store's device id is a hash of "s3 ENDPOINT/BUCKET": it differs
            # exactly as the endpoint's port does.
            if value in self.s3_devices:
                return "<S3_DEVICE_ID>"
        return value


def read_report(path: Path, returned: dict) -> dict:
    """The report as a script reads it: the --json file, parsed. It must also be exactly what
    the project's writer makes of that content (one record a line, indent 2), and the report
    the library call returned."""
    text = path.read_text(encoding="utf-8")
    report = json.loads(text)
    assert text == dumps(report) + "\n", "the JSON file is not json_report.dumps' layout"
    assert report == json.loads(dumps(returned)), "the JSON file is not the returned report"
    return report


def check_golden(name: str, report: dict, norm: Normaliser) -> None:
    text = json.dumps(norm(report), indent=1, ensure_ascii=False) + "\n"
    path = GOLDEN / f"{name}.json"
    if WRITE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"{path} is missing: run with INGEST_WRITE_GOLDEN=1 to write it")
    want = path.read_text(encoding="utf-8")
    if text != want:
        diff = "".join(difflib.unified_diff(
            want.splitlines(keepends=True), text.splitlines(keepends=True),
            fromfile=f"golden/{name}.json", tofile=f"{name} (this run, normalised)"))
        pytest.fail(f"the {name} report differs from its golden file "
                    f"(INGEST_WRITE_GOLDEN=1 rewrites it if the change is intended):\n{diff}",
                    pytrace=False)


# --- running the commands -----------------------------------------------------------------------
def run_offload(card: Path, dests: list[str], out: Path, device_of, endpoint: str | None = None,
                clock: Callable[[], datetime] | None = None) -> dict:
    """`ingest offload CARD DEST... --json OUT` (the CLI's defaults otherwise; jobs fixed)."""
    result = api.offload(str(card), dests, layout=None, retries=2, jobs=2, decode=True,
                         previews=True, preview_size=2048, json_path=str(out),
                         s3_endpoint=endpoint, min_copies=2, source_verify=True,
                         clock=clock or SteppingClock(), device_of=device_of)
    return read_report(out, result.report)


def run_verify(archive: str, out: Path, endpoint: str | None = None) -> dict:
    """`ingest verify ARCHIVE --json OUT`."""
    cfg = VerifyConfig(archives=[archive], decode=True, json_path=str(out), s3_endpoint=endpoint,
                       clock=SteppingClock(datetime(2030, 2, 1, 3, 0, tzinfo=UTC)))
    cfg.jobs = 2
    return read_report(out, verify(cfg).report)


def run_status(card: Path, dests: list[str], out: Path, device_of,
               endpoint: str | None = None) -> dict:
    """`ingest status CARD DEST... --json OUT`: the command writes the report it is given."""
    result = card_status(str(card), dests, min_copies=2, s3_endpoint=endpoint, device_of=device_of,
                         clock=SteppingClock(datetime(2030, 3, 1, 3, 0, tzinfo=UTC)))
    write_json(result.report, str(out))
    return read_report(out, result.report)


def st_devs(*paths: Path) -> tuple[int, ...]:
    return tuple({os.stat(p).st_dev for p in paths})


# --- the golden tests ---------------------------------------------------------------------------
def test_offload_local(card, tmp_path):
    (disk,) = local_dests(tmp_path, "disk-A")
    report = run_offload(card, [str(disk)], tmp_path / "offload.json",
                         devices(card, {disk: DISK_1}))
    check_golden("offload_local", report, Normaliser(tmp_path, local_devices=st_devs(disk)))


@needs_s3
def test_offload_local_and_s3(card, tmp_path, endpoint):
    (disk,) = local_dests(tmp_path, "disk-A")
    bucket = make_bucket(endpoint, "golden-offload")
    url = f"s3://{bucket}/photos"
    report = run_offload(card, [str(disk), url], tmp_path / "offload.json",
                         devices(card, {disk: DISK_1}), endpoint)
    norm = Normaliser(tmp_path, endpoint, local_devices=st_devs(disk))
    norm.add_s3_device(bucket)
    check_golden("offload_local_s3", report, norm)


def test_verify_local(card, tmp_path):
    (disk,) = local_dests(tmp_path, "disk-A")
    run_offload(card, [str(disk)], tmp_path / "offload.json", devices(card, {disk: DISK_1}))
    report = run_verify(str(disk), tmp_path / "verify.json")
    check_golden("verify_local", report, Normaliser(tmp_path, local_devices=st_devs(disk)))


@needs_s3
def test_verify_s3(card, tmp_path, endpoint):
    (disk,) = local_dests(tmp_path, "disk-A")
    bucket = make_bucket(endpoint, "golden-verify")
    url = f"s3://{bucket}/photos"
    # A fixed clock for the offload: the bucket's catalog rows are added by the upload
    # threads in the order their uploads finish, each stamped `ingested_at` by the clock when
    # it is added, and verify checks never-checked rows oldest `ingested_at` first. A stepping
    # clock would make that order (the order of the verify report's files) the threads' race.
    # With one time for all, the order falls to verify's tie-break, the path.
    run_offload(card, [str(disk), url], tmp_path / "offload.json",
                devices(card, {disk: DISK_1}), endpoint, clock=FixedClock(SteppingClock.START))
    report = run_verify(url, tmp_path / "verify.json", endpoint)
    norm = Normaliser(tmp_path, endpoint, local_devices=st_devs(disk))
    norm.add_s3_device(bucket)
    check_golden("verify_s3", report, norm)


def test_status_local(card, tmp_path):
    disks = local_dests(tmp_path, "disk-A", "disk-B")
    device_of = devices(card, {disks[0]: DISK_1, disks[1]: DISK_2})
    run_offload(card, [str(d) for d in disks], tmp_path / "offload.json", device_of)
    report = run_status(card, [str(d) for d in disks], tmp_path / "status.json", device_of)
    check_golden("status_local", report, Normaliser(tmp_path, local_devices=st_devs(*disks)))


@needs_s3
def test_status_local_and_s3(card, tmp_path, endpoint):
    (disk,) = local_dests(tmp_path, "disk-A")
    bucket = make_bucket(endpoint, "golden-status")
    url = f"s3://{bucket}/photos"
    device_of = devices(card, {disk: DISK_1})
    run_offload(card, [str(disk), url], tmp_path / "offload.json", device_of, endpoint)
    report = run_status(card, [str(disk), url], tmp_path / "status.json", device_of, endpoint)
    norm = Normaliser(tmp_path, endpoint, local_devices=st_devs(disk))
    norm.add_s3_device(bucket)
    check_golden("status_local_s3", report, norm)
