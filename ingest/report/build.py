"""The report of a run, as the JSON schema `ingest-report/1` pins it, and the files it is
written to. The offload and both verify runs (local archives, s3://) end here."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ingest import __version__
from ingest.catalog import STATE_DIR
from ingest.report.html import default_html_path, write_html
from ingest.report.json_report import dumps, write_json
from ingest.report.junit import write_junit
from ingest.report.versions import NOT_RUN, versions
from ingest.summary import summarize

if TYPE_CHECKING:
    from ingest.copier import Destination
    from ingest.discover import Discovery
    from ingest.model import FileRecord
    from ingest.safety import CardVerdict

# Under each destination's STATE_DIR: the offload writes a preview per image there, verify
# looks for one there, and the HTML reports link to them.
PREVIEW_DIR = "previews"


def build_report(command: str, source: str | None, dests: list[Destination],
                 records: list[FileRecord], found: Discovery | None, started, finished,
                 cfg, decoders: dict[str, str] | None = None,
                 card: CardVerdict | None = None) -> dict:
    """`decoders`: the versions the decode workers reported; None when no worker came up
    (nothing to decode, or they could not start): this process names its own."""
    seconds = (finished - started).total_seconds()
    return {
        "schema": "ingest-report/1",
        "command": command,
        "tool_version": __version__,
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "seconds": round(seconds, 3),
        "source": source,
        "destinations": [{"root": d.root, "device": d.device, "files": d.files,
                          "bytes": d.bytes, "error": d.dead} for d in dests],
        "versions": versions(decoders if cfg.decode else NOT_RUN),
        "skipped_system_files": len(found.system_files) if found else 0,
        "skipped": [{"path": s.rel, "reason": s.reason, "holds_back": s.holds_back}
                    for s in found.skipped] if found else [],
        "files": [r.to_json() for r in records],
        "summary": summarize(records, command, card=card,
                             held_back=sum(s.holds_back for s in found.skipped) if found else 0),
    }


def write_reports(report: dict, roots: list[str], cfg, stores: list | None = None) -> None:
    """The reports the user asked for, then a JSON and HTML copy inside each destination:
    `roots` are folders; `stores` object stores (or any `Store`), which get the same files
    through `write_small`."""
    previews = [Path(r) / STATE_DIR / PREVIEW_DIR for r in roots]
    # The destinations' own copies first: a path the user gave may sit on a disk that died,
    # and its error must not cost the others.
    for root, preview_root in zip(roots, previews, strict=True):
        if not cfg.destination_reports:
            break
        html = default_html_path(report, Path(root))
        try:
            write_html(report, html, preview_root)
            write_json(report, str(html.with_suffix(".json")))
        except OSError:
            pass  # a destination that failed mid-run is already named in the report
    for store in (stores or []) if cfg.destination_reports else []:
        _report_into(store, report, previews[0] if previews else None)
    if cfg.json_path:
        write_json(report, cfg.json_path)
    if cfg.junit_path:
        write_junit(report, Path(cfg.junit_path))
    if cfg.html_path:
        write_html(report, Path(cfg.html_path), previews[0] if previews else None)


def _report_into(store, report: dict, local_previews) -> None:
    """The HTML and JSON reports inside a store that is not a folder: rendered in a temporary
    folder laid out as the store is (so the page's links to previews hold in the store),
    then written whole. The page reads each preview's size: from the local destination's
    previews when the run had one, else from the store."""
    with tempfile.TemporaryDirectory(prefix="ingest-report-") as tmp:
        previews = Path(tmp) / STATE_DIR / PREVIEW_DIR
        previews.parent.mkdir(parents=True)
        if local_previews is not None and local_previews.is_dir():
            previews.symlink_to(local_previews, target_is_directory=True)
        else:
            for rec in report.get("files") or []:
                name = rec.get("preview")
                if not name or not any(c.get("destination") == store.url
                                       for c in rec.get("copies") or []):
                    continue
                try:
                    data = store.read_small(f"{STATE_DIR}/{PREVIEW_DIR}/{name}")
                except OSError:
                    data = None
                if data:
                    path = previews / name
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
        html = default_html_path(report, Path(tmp))
        try:
            write_html(report, html, previews)
            rel = html.relative_to(tmp).as_posix()
            store.write_small(rel, html.read_bytes())
            store.write_small(rel[:-len(".html")] + ".json",
                              (dumps(report) + "\n").encode("utf-8"))
        except OSError:
            pass  # the report is also written where the user asked; the store is named in it
