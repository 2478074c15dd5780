"""An object store as a destination, the way a user meets it: `ingest offload CARD DISK URL`,
`ingest verify URL DISK --repair`, `ingest status CARD DISK URL`. The same suite runs against
S3 (moto's server on loopback, through s3fs) and against fsspec's in-memory file system, the
stand-in for any other fsspec back end (no server checksums: every proof is a download).

The store is inspected and damaged through the file system's own calls, never through
ingest's client, so what the tests see is what the store holds."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from rigs.s3 import moto_server

from ingest import api
from ingest.cli import cli
from ingest.model import Status
from ingest.status import card_status

HAVE_FSSPEC = importlib.util.find_spec("fsspec") is not None
HAVE_S3 = all(importlib.util.find_spec(m) for m in ("s3fs", "moto"))
KEY_ID = "AKIAINGESTSTORESKEY01"
SECRET = "ingest-stores-secret-Lk3vQ9xR2"

pytestmark = pytest.mark.skipif(not HAVE_FSSPEC, reason="fsspec is not installed (pip install "
                                "'ingest[s3]'; the test extras include it)")


@dataclass
class Target:
    """One object-store prefix, and raw access to it through the file system itself."""

    url: str
    endpoint: str | None
    fs: object  # an fsspec file system
    base: str  # the prefix as the file system names it

    def key(self, rel: str) -> str:
        return f"{self.base}/{rel}"

    def read(self, rel: str) -> bytes:
        return self.fs.cat_file(self.key(rel))

    def write(self, rel: str, data: bytes) -> None:
        self.fs.pipe_file(self.key(rel), data)

    def delete(self, rel: str) -> None:
        self.fs.rm_file(self.key(rel))

    def keys(self) -> list[str]:
        self.fs.invalidate_cache()
        found = self.fs.find(self.base)
        return sorted(k[len(self.base) + 1:] for k in found)

    def download(self, into: Path) -> None:
        for rel in self.keys():
            path = into / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(self.read(rel))


@pytest.fixture(scope="module")
def s3_endpoint():
    if not HAVE_S3:
        pytest.skip("s3fs or moto is not installed (pip install 'ingest[s3]' 'moto[server]')")
    with moto_server(KEY_ID, SECRET) as (endpoint, _server):
        yield endpoint


@pytest.fixture(params=["memory", "s3"])
def target(request) -> Target:
    name = f"photos-{uuid.uuid4().hex[:10]}"
    if request.param == "memory":
        import fsspec

        fs = fsspec.filesystem("memory")
        fs.mkdir(f"/{name}")
        yield Target(f"memory://{name}/archive", None, fs, f"/{name}/archive")
        fs.rm(f"/{name}", recursive=True)
        return
    endpoint = request.getfixturevalue("s3_endpoint")
    from ingest.store.s3 import make_filesystem

    fs = make_filesystem(endpoint)
    fs.call_s3("create_bucket", Bucket=name)
    yield Target(f"s3://{name}/archive", endpoint, fs, f"{name}/archive")


def offload(card: Path, disk: Path, target: Target, **kw):
    disk.mkdir(exist_ok=True)
    return api.offload(str(card), [str(disk), target.url], jobs=2,
                       s3_endpoint=target.endpoint, **kw)


def verify_cli(*args: str, endpoint: str | None) -> tuple[int, dict, str]:
    out = Path(args[-1])
    extra = ["--s3-endpoint", endpoint] if endpoint else []
    result = CliRunner().invoke(cli, ["verify", *args[:-1], *extra, "--json", str(out)])
    report = json.loads(out.read_text()) if out.is_file() else {}
    return result.exit_code, report, result.output


def flip(data: bytes) -> bytes:
    middle = bytearray(data)
    middle[len(middle) // 2] ^= 0x20
    return bytes(middle)


def test_offload_leaves_previews_history_and_report_in_the_store(target, card, manifest,
                                                                 tmp_path):
    disk = tmp_path / "disk"
    result = offload(card, disk, target)
    assert result.report["destinations"][1]["root"] == target.url
    assert result.report["destinations"][1]["error"] is None
    for rec in result.records:
        store_copy = rec.copies[-1]
        assert (store_copy.destination, store_copy.verified) == (target.url, True), rec.path
        assert target.read(store_copy.path) == (card / rec.path).read_bytes()
    damaged = [r for r in result.records if r.status is Status.DAMAGED_ON_CARD]
    assert [r.path for r in damaged] == manifest.damaged  # the verdict, for both copies

    keys = target.keys()
    previews = {r.copies[-1].path + ".jpg" for r in result.records if r.preview}
    assert previews and {f".ingest/previews/{p}" for p in previews} <= set(keys)
    for p in previews:  # the very JPEGs the disk holds
        assert target.read(f".ingest/previews/{p}") == \
            (disk / ".ingest" / "previews" / p).read_bytes()
    assert not [k for k in keys if k.startswith(".ingest/partials/") or k == ".ingest/lock"]

    html = [k for k in keys if k.startswith(".ingest/reports/offload-") and k.endswith(".html")]
    assert len(html) == 1
    page = target.read(html[0]).decode()
    assert 'src="../previews/' in page  # links that hold inside the store
    local_json = next((disk / ".ingest" / "reports").glob("offload-*.json")).read_bytes()
    assert target.read(html[0][:-5] + ".json") == local_json  # one report, every copy

    # The ASC MHL history: one transfer generation naming every file, readable by the
    # reference tool once the prefix is fetched as a folder.
    assert [k for k in keys if k.startswith("ascmhl/")] == sorted(
        k for k in keys if k.startswith("ascmhl/") and (k.endswith(".mhl")
                                                        or k.endswith("ascmhl_chain.xml")))
    assert len([k for k in keys if k.endswith(".mhl")]) == 1
    if importlib.util.find_spec("ascmhl"):
        fetched = tmp_path / "fetched"
        target.download(fetched)
        shutil.rmtree(fetched / ".ingest")
        tool = shutil.which("ascmhl-debug") or str(Path(sys.executable).parent / "ascmhl-debug")
        checked = subprocess.run([tool, "verify", str(fetched)], capture_output=True, text=True,
                                 timeout=120)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_rerun_finds_everything_in_the_store(target, card, tmp_path):
    disk = tmp_path / "disk"
    offload(card, disk, target, decode=False)
    before = {k: target.read(k) for k in target.keys() if not k.startswith((".ingest/",
                                                                            "ascmhl/"))}
    again = offload(card, disk, target, decode=False)
    assert {str(r.status) for r in again.records} == {"duplicate"}
    assert {r.copies[-1].action for r in again.records} == {"existing"}
    assert {k: target.read(k) for k in target.keys()
            if not k.startswith((".ingest/", "ascmhl/"))} == before
    assert len([k for k in target.keys() if k.endswith(".mhl")]) == 1  # nothing new


def test_verify_repairs_the_store_from_the_disk_and_the_disk_from_the_store(target, card,
                                                                            manifest, tmp_path):
    disk = tmp_path / "disk"
    result = offload(card, disk, target, decode=False)
    images = sorted(r.copies[0].path for r in result.records if str(r.kind) in ("raw", "jpeg"))
    in_store, on_disk, gone = images[0], images[1], images[2]
    good_store, good_disk = target.read(in_store), (disk / on_disk).read_bytes()
    target.write(in_store, flip(good_store))
    (disk / on_disk).write_bytes(flip(good_disk))
    target.delete(gone)

    code, report, output = verify_cli(target.url, str(disk), "--repair",
                                      str(tmp_path / "v.json"), endpoint=target.endpoint)
    # Only the file that was damaged on the card is left to act on, in both archives.
    assert code == 1, output
    assert {(f["status"], f["path"].rpartition("/")[2]) for f in report["files"]
            if f["status"] not in ("verified", "recopied")} == \
        {("damaged", manifest.damaged[0].rpartition("/")[2])}
    by = {(f["copies"][0]["destination"], f["path"]): f for f in report["files"]}
    fixed = by[(target.url, in_store)]
    assert fixed["status"] == "recopied"
    assert fixed["detail"].startswith(f"repaired from {disk}/{in_store} (was corrupt")
    assert by[(target.url, gone)]["status"] == "recopied"
    back = by[(str(disk), on_disk)]
    assert back["status"] == "recopied"
    assert back["detail"].startswith(f"repaired from {target.url}/{on_disk} (was corrupt")
    assert target.read(in_store) == good_store and target.read(gone) == (disk / gone).read_bytes()
    assert (disk / on_disk).read_bytes() == good_disk
    # The replaced bytes are kept, in the store as on a disk: they may be someone's edit.
    kept = [k for k in target.keys() if k.startswith(".ingest/quarantine/")
            and k.endswith(in_store)]
    assert len(kept) == 1 and target.read(kept[0]) == flip(good_store)
    assert fixed["copies"][0]["quarantined"] == kept[0]
    assert report["verify"]["repaired"] == 3
    assert len([k for k in target.keys() if k.endswith(".mhl")]) == 2  # an in-place generation
    assert [k for k in target.keys() if k.startswith(".ingest/reports/verify-")]

    code, report, output = verify_cli(target.url, str(disk), "--no-decode",
                                      str(tmp_path / "v2.json"), endpoint=target.endpoint)
    assert {f["status"] for f in report["files"]} == {"verified", "damaged"}, output


def test_verify_of_the_store_alone_repairs_from_the_disk_it_was_offloaded_with(target, card,
                                                                               tmp_path):
    """No disk on the command line: the store's catalog remembers the offload's other
    destinations, and the good copy comes from there."""
    disk = tmp_path / "disk"
    result = offload(card, disk, target, decode=False)
    victim = result.records[0].copies[-1].path
    target.write(victim, flip(target.read(victim)))
    code, report, output = verify_cli(target.url, "--repair", "--no-decode",
                                      str(tmp_path / "v.json"), endpoint=target.endpoint)
    assert code == 0, output
    (fixed,) = [f for f in report["files"] if f["path"] == victim]
    assert fixed["status"] == "recopied" and f"from {disk}/" in fixed["detail"]
    assert target.read(victim) == (card / result.records[0].path).read_bytes()


def test_verify_decodes_objects_and_finds_rot_loss_and_strays(target, card, manifest,
                                                              tmp_path):
    disk = tmp_path / "disk"
    result = offload(card, disk, target, decode=False)
    images = sorted(r.copies[-1].path for r in result.records
                    if str(r.kind) in ("raw", "jpeg") and r.path not in manifest.damaged)
    (damaged,) = [r.copies[-1].path for r in result.records if r.path in manifest.damaged]
    target.write(images[0], flip(target.read(images[0])))
    target.delete(images[1])
    target.write("added-by-hand.txt", b"hello")
    code, report, output = verify_cli(target.url, str(tmp_path / "v.json"),
                                      endpoint=target.endpoint)
    assert code == 1, output
    by = {f["path"]: f for f in report["files"]}
    assert by[images[0]]["status"] == "corrupt"
    assert "content changed since ingest" in by[images[0]]["detail"]
    assert by[images[1]]["status"] == "missing"
    assert by["added-by-hand.txt"]["status"] == "untracked"
    # Every image that is still whole was downloaded and decoded; the one damaged on the card
    # still does not decode.
    decoded = {p: f["decode"]["verdict"] for p, f in by.items() if f.get("decode")}
    assert decoded and set(decoded) >= set(images[2:])
    assert {decoded[p] for p in images[2:]} == {"ok"}
    assert by[damaged]["status"] == "damaged"


def test_status_counts_the_store_as_a_copy(target, card, tmp_path):
    disk = tmp_path / "disk"
    offload(card, disk, target, decode=False)

    def device_of(path: str) -> int:  # the card and the disk share this machine's one disk
        return 7 if str(path).startswith(str(card)) else 8

    alone = card_status(str(card), [str(disk)], device_of=device_of)
    assert alone.exit_code == 1
    both = card_status(str(card), [str(disk), target.url], device_of=device_of,
                       s3_endpoint=target.endpoint)
    assert both.exit_code == 0, both.report["summary"]
    assert [d["root"] for d in both.report["destinations"]] == [str(disk), target.url]
    for f in both.report["files"]:
        assert f["status"] == "safe"
        assert {c["destination"] for c in f["copies"]} == {str(disk), target.url}
    rel = next(r for r in target.keys() if r.endswith(".JPG"))
    target.delete(rel)
    after = card_status(str(card), [str(disk), target.url], device_of=device_of,
                        s3_endpoint=target.endpoint)
    assert after.exit_code == 1


def test_an_unknown_scheme_or_a_missing_package_is_one_line(tmp_path, card):
    (tmp_path / "disk").mkdir()
    out = CliRunner().invoke(cli, ["offload", str(card), str(tmp_path / "disk"),
                                   "nosuch://bucket/x"])
    assert out.exit_code == 2
    assert out.output.strip() == ("ingest: destination nosuch://bucket/x: nosuch:// is not an "
                                  "object store ingest can use (s3://BUCKET/PREFIX, or another "
                                  "fsspec file system)")


def test_a_repair_that_fails_leaves_the_store_as_it_was_and_keeps_nothing(card, tmp_path,
                                                                          monkeypatch):
    """Every upload of the repair fails (a store refusing writes): the damaged object stays
    at its name, nothing is put in the quarantine, and the record says nothing changed."""
    import fsspec

    from ingest.store.generic import FsspecClient

    fs = fsspec.filesystem("memory")
    name = f"photos-{uuid.uuid4().hex[:10]}"
    fs.mkdir(f"/{name}")
    target = Target(f"memory://{name}/archive", None, fs, f"/{name}/archive")
    disk = tmp_path / "disk"
    result = offload(card, disk, target, decode=False)
    victim = result.records[0].copies[-1].path
    damaged = flip(target.read(victim))
    target.write(victim, damaged)

    def refused(self, local_path, key):
        raise PermissionError(13, "write refused by the store")

    monkeypatch.setattr(FsspecClient, "upload", refused)
    code, report, output = verify_cli(target.url, str(disk), "--repair", "--no-decode",
                                      str(tmp_path / "v.json"), endpoint=None)
    assert code == 1, output
    (rec,) = [f for f in report["files"]
              if f["path"] == victim and f["copies"][0]["destination"] == target.url]
    assert rec["status"] == "corrupt"
    assert "could not restore" in rec["detail"] and "nothing was changed" in rec["detail"]
    assert rec["copies"][0]["quarantined"] is None
    assert target.read(victim) == damaged
    assert not [k for k in target.keys() if k.startswith(".ingest/quarantine/")]
    fs.rm(f"/{name}", recursive=True)


def test_a_bucket_that_stops_answering_mid_verify_is_not_checked_not_corrupt(card, tmp_path):
    """The S3 endpoint goes away while verify downloads: the files after it are "not
    checked" and the bucket is named as the archive that stopped, as for an unplugged disk;
    no file is called corrupt, and the run still ends with its report."""
    if not HAVE_S3:
        pytest.skip("s3fs or moto is not installed (pip install 'ingest[s3]' 'moto[server]')")
    from ingest.store.s3 import make_filesystem
    from ingest.verify import VerifyConfig
    from ingest.verify.run import verify

    url = "s3://going/archive"
    disk = tmp_path / "disk"
    disk.mkdir()
    checked = []
    with moto_server(KEY_ID, SECRET) as (endpoint, server):
        make_filesystem(endpoint).call_s3("create_bucket", Bucket="going")
        api.offload(str(card), [str(disk), url], jobs=2, decode=False, s3_endpoint=endpoint)

        def progress(event, **info):
            if event == "file_checked" and info["root"] == url:
                checked.append(info["path"])
                if len(checked) == 3:
                    server.stop()

        result = verify(VerifyConfig([url, str(disk)], jobs=1, decode=False,
                                     s3_endpoint=endpoint, progress=progress))
    bucket = [r for r in result.records if r.copies[0].destination == url]
    statuses = {str(r.status) for r in bucket}
    assert "corrupt" not in statuses and "missing" not in statuses, statuses
    assert statuses == {"verified", "skipped"}
    assert sum(r.status is Status.VERIFIED for r in bucket) == 3
    assert all("not checked: the archive stopped responding" in r.detail
               for r in bucket if r.status is Status.SKIPPED)
    (entry,) = [d for d in result.report["destinations"] if d["root"] == url]
    assert "stopped responding" in entry["error"]
    assert result.exit_code == 1
    disk_records = [r for r in result.records if r.copies[0].destination == str(disk)]
    assert {str(r.status) for r in disk_records} == {"verified"}  # the disk was checked
