"""Off-site copies on an S3-compatible store, against moto's S3 server on loopback: upload from
the verified local copy through a partial key, re-download and hash, server checksums, the
remote catalog, `ingest verify s3://...`, the status view, failures mid-upload, the lock, and
that no credential ever reaches a report, a catalog or the terminal."""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from rigs.s3 import moto_server, s3_missing

from ingest import api
from ingest.cli.verify import verify as verify_command
from ingest.lock import LockedError
from ingest.model import Kind, Status
from ingest.preflight import UsageError
from ingest.verify import VerifyConfig
from ingest.verify.run import verify

HAVE_S3 = all(importlib.util.find_spec(m) for m in ("s3fs", "moto"))
needs_s3 = pytest.mark.skipif(not HAVE_S3, reason="s3fs or moto is not installed (pip install "
                              "'ingest[s3]' 'moto[server]'; the test extras include both)")

KEY_ID = "AKIAINGESTTESTKEY042"
SECRET = "ingest-test-secret-Zq9vW2xK7pLm4Rt8"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def endpoint():
    if s3_missing():
        pytest.skip(s3_missing())
    with moto_server(KEY_ID, SECRET) as (endpoint, _server):
        yield endpoint


@pytest.fixture()
def bucket(endpoint) -> str:
    from ingest.store.s3 import make_filesystem

    name = f"photos-{uuid.uuid4().hex[:12]}"
    make_filesystem(endpoint).call_s3("create_bucket", Bucket=name)
    return name


def offload_locally(card: Path, tmp_path: Path, decode: bool) -> tuple[Path, object]:
    """The card offloaded to a local archive: what the S3 stage uploads from."""
    dest = tmp_path / "archive"
    dest.mkdir()
    return dest, api.offload(str(card), [str(dest)], jobs=2, decode=decode,
                             destination_reports=False)


@pytest.fixture()
def local(card, tmp_path) -> tuple[Path, object]:
    return offload_locally(card, tmp_path, decode=False)


def store_for(endpoint: str, url: str, **kw):
    from ingest.store.s3 import S3Client

    return S3Client(url, endpoint, **kw)


def objects(endpoint: str, bucket: str) -> dict[str, int]:
    from ingest.store.s3 import S3Client

    return S3Client(f"s3://{bucket}", endpoint).list("")


def RemoteDestination(url: str, *, endpoint: str | None = None, store=None, **kw):  # noqa: N802
    """The object store the offload opens for an s3:// URL, on a given client when a test
    injects failures into its calls."""
    from ingest.store.objects import ObjectStore

    return ObjectStore(store or store_for(endpoint, url), **kw)


def RemoteArchive(url: str, *, endpoint: str):  # noqa: N802
    from ingest.store import open_store

    return open_store(url, endpoint=endpoint, background=False).open_readonly()


def upload_all(endpoint: str, url: str, records, session: str = "s1", **kw):
    """What the pipeline does after its local commits: one upload per record, applied to the
    record, statuses into the remote catalog, then the catalog uploaded."""

    dest = RemoteDestination(url, endpoint=endpoint, **kw)
    dest.open(session, source="card")
    pending = [(rec, dest.start_record(rec)) for rec in records]
    for rec, future in pending:
        dest.record(rec, future.result() if future else None)
    dest.finish(records)
    dest.close()
    return dest


def remote_catalog(endpoint: str, url: str, tmp_path: Path) -> sqlite3.Connection:
    from ingest.store.client import CATALOG_KEY

    store = store_for(endpoint, url)
    path = tmp_path / f"remote-{uuid.uuid4().hex[:6]}.sqlite"
    assert store.get_file(store.loc.key(CATALOG_KEY), str(path))
    return sqlite3.connect(path)


@needs_s3
def test_offload_to_s3_verify_and_status(endpoint, bucket, card, tmp_path):
    from ingest import fsio

    root, result = offload_locally(card, tmp_path, decode=True)
    url = f"s3://{bucket}/archive/2024"
    dest = upload_all(endpoint, url, result.records)
    assert dest.dead is None
    assert dest.files == len(result.records)
    assert dest.device == f"s3 {endpoint}/{bucket}"
    store = store_for(endpoint, url)
    for rec in result.records:
        s3 = rec.copies[-1]
        assert (s3.destination, s3.verified, s3.action) == (url, True, "copied")
        assert s3.path == rec.copies[0].path  # the same layout as the local archive
        assert store.hash_object(store.loc.key(s3.path)) == \
            fsio.uncached_hash(str(root / rec.copies[0].path))
    keys = objects(endpoint, bucket)
    assert not [k for k in keys if "/.ingest/partials/" in k]
    assert "archive/2024/.ingest/catalog.sqlite" in keys
    assert "archive/2024/.ingest/lock" not in keys

    db = remote_catalog(endpoint, url, tmp_path)
    rows = dict(db.execute("SELECT path, status FROM files"))
    assert rows == {r.copies[-1].path: str(r.status) for r in result.records}
    assert "damaged_on_card" in rows.values()  # the decode verdict reached the remote row
    sums = [c for (c,) in db.execute("SELECT checksum FROM remote_objects")]
    assert len(sums) == len(rows) and all(c.startswith("sha256:") for c in sums)

    checked = verify(VerifyConfig([url], jobs=2, s3_endpoint=endpoint))
    # The same bytes as the card's, so the same hashes and decode verdicts as the offload's;
    # the file damaged on the card is `damaged` to verify.
    # Verify does not decode video and sidecars at all; the offload notes "not_decoded".
    as_verify = {"verified": "verified", "damaged_on_card": "damaged"}
    decoded = {"not_decoded": None}
    assert {r.path: (str(r.status), r.xxh3_128, (r.decode or {}).get("verdict"))
            for r in checked.records} == \
        {r.copies[-1].path: (as_verify[str(r.status)], r.xxh3_128,
                             decoded.get(r.decode["verdict"], r.decode["verdict"]))
         for r in result.records}
    assert checked.exit_code == 1
    assert checked.report["destinations"][0]["device"] == f"s3 {endpoint}/{bucket}"
    assert [k for k in objects(endpoint, bucket) if "/.ingest/reports/verify-" in k]

    view = RemoteArchive(url, endpoint=endpoint)
    try:
        good = next(r for r in result.records if r.status is Status.VERIFIED)
        (row,) = view.by_hash(good.xxh3_128)
        assert view.problem(row) is None
        assert view.device_id < 0 and view.device_label == dest.device
        store.delete(store.loc.key(row.path))
        assert view.problem(row) == "listed in the catalog but missing from the bucket"
    finally:
        view.close()


@needs_s3
def test_rerun_finds_everything_in_place(endpoint, bucket, local):
    _, result = local
    url = f"s3://{bucket}/a"
    records = result.records[:8]
    upload_all(endpoint, url, records, session="s1")
    before = objects(endpoint, bucket)
    for rec in records:
        rec.copies.pop()
    again = upload_all(endpoint, url, records, session="s2")
    assert again.files == 0
    assert {rec.copies[-1].action for rec in records} == {"existing"}
    assert {k: v for k, v in objects(endpoint, bucket).items() if "/.ingest/" not in k} == \
        {k: v for k, v in before.items() if "/.ingest/" not in k}


@needs_s3
def test_rerun_proves_an_existing_object_before_trusting_it(endpoint, bucket, local, tmp_path):
    """An object overwritten at its catalogued size is no `existing` copy: the re-run downloads
    it again, records what it found, and uploads the file anew."""
    from ingest.store.s3 import make_filesystem

    _, result = local
    url = f"s3://{bucket}/a"
    records = result.records[:3]
    upload_all(endpoint, url, records, session="s1")
    rotted = records[0]
    key = f"a/{rotted.copies[-1].path}"
    make_filesystem(endpoint).call_s3("put_object", Bucket=bucket, Key=key,
                                      Body=b"\0" * rotted.size)
    for rec in records:
        rec.copies.pop()
    upload_all(endpoint, url, records, session="s2")
    assert [rec.copies[-1].action for rec in records] == ["copied", "existing", "existing"]
    db = remote_catalog(endpoint, url, tmp_path)
    found = db.execute("SELECT result, detail FROM checks WHERE result='corrupt'").fetchall()
    db.close()
    assert len(found) == 1 and "re-read by ingest offload" in found[0][1]
    store = store_for(endpoint, url)
    assert store.hash_object(store.loc.key(rotted.copies[-1].path)) == \
        (rotted.xxh3_128, rotted.size)
    kept = [k for k in objects(endpoint, bucket) if "/.ingest/quarantine/" in k]
    assert len(kept) == 1 and kept[0].endswith(rotted.copies[-1].path)
    assert kept[0] == store.loc.key(rotted.copies[-1].quarantined)  # the report says where
    import xxhash

    zeros = (xxhash.xxh3_128_hexdigest(b"\0" * rotted.size), rotted.size)
    assert store.hash_object(kept[0]) == zeros  # the bytes it replaced, kept


def big_file(tmp_path: Path, size: int = 11 * MIB, name: str = "CLIP0001.MOV"
             ) -> tuple[Path, str]:
    from ingest import fsio

    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    return path, fsio.uncached_hash(str(path))[0]


@needs_s3
def test_failure_mid_upload_leaves_nothing_final_and_a_rerun_completes(endpoint, bucket,
                                                                      tmp_path):
    """The second part of a three-part upload fails, every time: no object under the final
    name, no partial, no unfinished multipart upload; the file needs a recopy; a re-run
    completes and its object hashes like the card."""
    from ingest.model import FileRecord

    path, digest = big_file(tmp_path)
    url = f"s3://{bucket}/p"
    store = store_for(endpoint, url, part_size=5 * MIB)
    real = store.call
    sent: list[int] = []

    def failing(method: str, **kw):
        if method == "upload_part":
            sent.append(kw["PartNumber"])
            if kw["PartNumber"] == 2:
                raise OSError(5, "connection reset by peer (injected)")
        return real(method, **kw)

    store.call = failing
    dest = RemoteDestination(url, store=store)
    dest.open("s1")
    result = dest.put_verified(str(path), "2024/CLIP0001.MOV", digest, path.stat().st_size, 0,
                               kind="video")
    rec = FileRecord(path="CLIP0001.MOV", kind=Kind.VIDEO, size=path.stat().st_size,
                     xxh3_128=digest, status=Status.VERIFIED)
    dest.record(rec, result)
    dest.close()
    assert not result.verified and result.action == "failed"
    assert "connection reset by peer (injected)" in result.detail
    assert "tried 2 times" in result.detail
    assert sent == [1, 2, 1, 2]
    assert rec.status is Status.NEEDS_RECOPY
    assert rec.detail.startswith(f"off-site copy to {url} failed: ")
    assert rec.copies[-1].verified is False
    keys = objects(endpoint, bucket)
    assert "p/2024/CLIP0001.MOV" not in keys
    assert not [k for k in keys if "/.ingest/partials/" in k]
    assert not store.call("list_multipart_uploads").get("Uploads")

    store.call = real
    again = RemoteDestination(url, store=store)
    again.open("s2")
    done = again.put_verified(str(path), "2024/CLIP0001.MOV", digest, path.stat().st_size, 0)
    again.close()
    assert done == (True, "", "2024/CLIP0001.MOV", "copied", None)
    assert store.hash_object("p/2024/CLIP0001.MOV") == (digest, path.stat().st_size)


@needs_s3
def test_a_killed_runs_partials_are_swept_and_its_object_adopted(endpoint, bucket, tmp_path):
    """A run killed after the copy but before its catalog upload left a stray partial, an
    unfinished multipart upload and a final object with no row. The next run removes the
    first two and adopts the third only after downloading it and finding it identical."""
    from ingest.store.client import PARTIALS

    path, digest = big_file(tmp_path, 6 * MIB)
    url = f"s3://{bucket}/k"
    store = store_for(endpoint, url)
    store.put_bytes(store.loc.key(f"{PARTIALS}old-1-x.JPG"), b"half a file")
    store.call("create_multipart_upload", Key=store.loc.key(f"{PARTIALS}old-2-y.MOV"))
    store.upload(str(path), store.loc.key("2024/CLIP0001.MOV"))
    dest = RemoteDestination(url, store=store)
    dest.open("s2")
    keys = objects(endpoint, bucket)
    assert not [k for k in keys if "/.ingest/partials/" in k]
    assert not store.call("list_multipart_uploads").get("Uploads")
    got = dest.put_verified(str(path), "2024/CLIP0001.MOV", digest, path.stat().st_size, 0)
    assert got == (True, "an identical object was already there", "2024/CLIP0001.MOV",
                   "existing", None)
    # A different object under the name is never overwritten: the file takes a suffix.
    other, other_digest = big_file(tmp_path, 1000, "other.MOV")
    placed = dest.put_verified(str(other), "2024/CLIP0001.MOV", other_digest, 1000, 0)
    dest.close()
    assert placed.verified and placed.path == f"2024/CLIP0001-{other_digest[:8]}.MOV"
    assert store.hash_object("k/2024/CLIP0001.MOV")[0] == digest


@needs_s3
def test_checksum_and_redownload_mismatches_are_caught(endpoint, bucket, tmp_path):

    path, digest = big_file(tmp_path, 2000)
    url = f"s3://{bucket}/c"
    store = store_for(endpoint, url)
    real_call, real_hash = store.call, store.hash_object
    wrong = {"n": 0}

    def call(method, **kw):  # the server says it stored a SHA-256 other than the local copy's
        out = real_call(method, **kw)
        if method == "put_object" and "/.ingest/partials/" in kw["Key"]:
            out = dict(out, ChecksumSHA256="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
        return out

    def flaky_hash(key, sink=None):  # the first download of the upload comes back different
        digest_back, n = real_hash(key, sink)
        if "/.ingest/partials/" in key and wrong["n"] == 0:
            wrong["n"] += 1
            return "0" * 32, n
        return digest_back, n

    store.call = call
    dest = RemoteDestination(url, store=store, retries=0)
    dest.open("s1")
    bad = dest.put_verified(str(path), "x/A.JPG", digest, 2000, 0)
    store.call = real_call
    store.hash_object = flaky_hash
    retried = dest.put_verified(str(path), "x/A.JPG", digest, 2000, 0)
    dest.close()
    assert not bad.verified and "server's SHA-256 of the upload" in bad.detail
    assert not retried.verified and "did not match the card when downloaded again" in \
        retried.detail
    assert "c/x/A.JPG" not in objects(endpoint, bucket)
    dest = RemoteDestination(url, store=store)  # one retry by default
    wrong["n"] = 0
    dest.open("s2")
    ok = dest.put_verified(str(path), "x/A.JPG", digest, 2000, 0)
    dest.close()
    assert ok == (True, "uploaded again (2 attempts)", "x/A.JPG", "copied", None)


@needs_s3
def test_verify_finds_rot_and_loss_in_the_bucket(endpoint, bucket, local):
    _, result = local
    url = f"s3://{bucket}/v"
    records = [r for r in result.records if r.kind in (Kind.RAW, Kind.JPEG)][:4]
    upload_all(endpoint, url, records)
    store = store_for(endpoint, url)
    images = sorted(r.copies[-1].path for r in records)
    data = bytearray(store.fs.cat_file(f"{bucket}/v/{images[0]}"))
    data[len(data) // 2] ^= 0x40
    store.put_bytes(store.loc.key(images[0]), bytes(data))
    store.delete(store.loc.key(images[1]))
    store.put_bytes(store.loc.key("added-by-hand.txt"), b"hello")
    checked = verify(VerifyConfig([url], jobs=1, decode=False, s3_endpoint=endpoint))
    by_path = {r.path: r for r in checked.records}
    assert by_path[images[0]].status is Status.CORRUPT
    assert "content changed since ingest" in by_path[images[0]].detail
    assert by_path[images[1]].status is Status.MISSING
    assert by_path["added-by-hand.txt"].status is Status.UNTRACKED
    assert checked.exit_code == 1
    again = verify(VerifyConfig([url], jobs=1, decode=False, s3_endpoint=endpoint,
                                max_bytes=1))
    assert {r.path for r in again.records[:2]} == set(images[:2])  # problems first


@needs_s3
def test_second_writer_is_locked_out_and_a_dead_holder_taken_over(endpoint, bucket):
    from ingest.store.client import LOCK_KEY

    url = f"s3://{bucket}/l"
    first = RemoteDestination(url, endpoint=endpoint)
    first.open("s1")
    with pytest.raises(LockedError, match="is in use by pid"):
        RemoteDestination(url, endpoint=endpoint).open("s2")
    first.close()
    store = store_for(endpoint, url)
    import socket

    store.put_bytes(store.loc.key(LOCK_KEY),
                    f"pid 999999999 on {socket.gethostname()} since 2000000000: x".encode())
    taken = RemoteDestination(url, endpoint=endpoint)
    taken.open("s3")  # that pid is gone: the lock was left by a killed run
    taken.close()


@needs_s3
def test_cli_and_reports_never_show_credentials(endpoint, bucket, local, tmp_path,
                                                monkeypatch):
    """Endpoint from AWS_ENDPOINT_URL_S3 (botocore's own setting); an upload that fails with
    the secret in its error text; a verify through the command line. The secret and the key
    id appear in no record, report, catalog or output."""

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    _, result = local
    url = f"s3://{bucket}/s"
    dest = RemoteDestination(url)
    real = dest.client.call

    def leaky(method, **kw):
        if method == "put_object" and "/.ingest/partials/" in kw["Key"] and \
                kw["Key"].endswith(".XMP"):
            raise OSError(5, f"refused for {KEY_ID} with {SECRET}")
        return real(method, **kw)

    records = [r for r in result.records if r.kind in (Kind.SIDECAR, Kind.JPEG)][:10]
    dest.client.call = leaky
    dest.open("s1")
    for rec in records:
        dest.record(rec, dest.start_record(rec).result())
    dest.finish(records)
    dest.close()
    flagged = [r for r in records if r.path.endswith(".XMP")]
    assert flagged and all(r.status is Status.NEEDS_RECOPY for r in flagged)
    assert "refused for *** with ***" in flagged[0].detail
    out = tmp_path / "verify.json"
    cli = CliRunner().invoke(verify_command, [url, "--no-decode", "--json", str(out)])
    assert cli.exit_code == 0, cli.output
    texts = [cli.output, out.read_text(), json.dumps([r.to_json() for r in records])]
    keys = objects(endpoint, bucket)
    store = store_for(endpoint, url)
    texts += [store.fs.cat_file(f"{bucket}/{k}").decode("latin-1") for k in keys]
    for text in texts:
        assert SECRET not in text and KEY_ID not in text


@needs_s3
def test_usage_errors_are_one_line(endpoint, bucket, tmp_path):
    from ingest.store.urls import split_destinations

    runner = CliRunner()
    gone = runner.invoke(verify_command, [f"s3://{bucket}-missing/x", "--s3-endpoint",
                                          endpoint])
    assert gone.exit_code == 2 and "does not exist" in gone.output
    empty = runner.invoke(verify_command, [f"s3://{bucket}/nothing-here", "--s3-endpoint",
                                           endpoint])
    assert empty.exit_code == 2 and "has no ingest catalog" in empty.output
    with pytest.raises(UsageError, match="give a local destination too"):
        split_destinations([f"s3://{bucket}/x"])
    assert split_destinations(["/a", f"s3://{bucket}/x/", "/b"]) == \
        (["/a", "/b"], [f"s3://{bucket}/x"])
    with pytest.raises(UsageError, match="nosuch:// is not an object store"):
        split_destinations(["/a", "nosuch://b/x"])
    if importlib.util.find_spec("gcsfs") is None:
        with pytest.raises(UsageError, match="gs:// destinations need gcsfs"):
            split_destinations(["/a", "gs://b/x"])


def test_without_s3fs_the_destination_says_how_to_enable_it(monkeypatch, tmp_path):
    from ingest.store.urls import split_destinations

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("s3fs", "fsspec") else real(name, *a))
    with pytest.raises(UsageError) as err:
        split_destinations([str(tmp_path), "s3://bucket/prefix"])
    assert str(err.value) == ("s3:// destinations need s3fs, which is not installed: "
                              "pip install 'ingest[s3]'")
    cli = CliRunner().invoke(verify_command, ["s3://bucket/prefix"])
    assert cli.exit_code == 2
    assert cli.output.strip() == ("ingest: s3:// destinations need s3fs, which is not "
                                  "installed: pip install 'ingest[s3]'")


def test_redact_removes_known_secrets(monkeypatch):
    from ingest.store.urls import redact

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value-xyz")
    text = redact("https://user:pw@host/x failed for AKIAABCDEFGHIJKLMNOP: s3cr3t-value-xyz",
                  ("other-token-123",))
    assert text == "https://host/x failed for ***: ***"
    assert redact("ok other-token-123", ("other-token-123",)) == "ok ***"



@needs_s3
def test_offload_pipeline_to_disk_and_s3_then_status_counts_the_bucket(endpoint, bucket, card,
                                                                     tmp_path, monkeypatch):
    """The whole path a user takes: `ingest offload CARD DISK s3://...`, then `ingest status`."""
    from ingest.status import card_status

    disk = tmp_path / "disk"
    disk.mkdir()
    url = f"s3://{bucket}/photos"
    result = api.offload(str(card), [str(disk), url], jobs=2, decode=False,
                         s3_endpoint=endpoint)
    assert result.exit_code == 0, [(r.path, r.detail) for r in result.records if r.flagged]
    for rec in result.records:
        assert [(c.destination, c.verified) for c in rec.copies] == [(str(disk), True),
                                                                     (url, True)]
    assert result.report["destinations"][1]["root"] == url
    assert [k for k in objects(endpoint, bucket) if k.startswith("photos/.ingest/reports/")]

    # The card and the disk share this machine's one real disk: say so to status.
    def device_of(path: str) -> int:
        return 7 if str(path).startswith(str(card)) else 8

    one_place = card_status(str(card), [str(disk)], device_of=device_of)
    assert one_place.exit_code == 1
    both = card_status(str(card), [str(disk), url], device_of=device_of, s3_endpoint=endpoint)
    assert both.exit_code == 0, both.report["summary"]
    assert all(f["status"] == "safe" for f in both.report["files"])
    again = api.offload(str(card), [str(disk), url], jobs=2, decode=False,
                        s3_endpoint=endpoint)
    assert {str(r.status) for r in again.records} == {"duplicate"}
