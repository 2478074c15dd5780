"""`ingest demo`: a sample card with one damaged file, offloaded to two destinations."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ingest import api
from ingest.preflight import UsageError
from ingest.report.terminal import render_summary
from ingest.samplecard import build_card


def run_demo(directory: str, *, jobs: int, console) -> int:
    base = Path(directory).resolve()
    card, dests = base / "card", [base / "archive-A", base / "archive-B"]
    if base.exists() and any(base.iterdir()) and not (card / "DCIM").is_dir():
        raise UsageError(f"{base} exists and is not an earlier demo folder: choose an empty "
                         "or new folder")
    for p in (card, *dests):
        shutil.rmtree(p, ignore_errors=True)
        p.mkdir(parents=True)
    manifest = build_card(card, seed=0, damaged=True)
    console.print(f"Built a sample card at {card}: {len(manifest.files)} files, "
                  f"with {', '.join(manifest.damaged)} damaged on purpose.")
    json_path = base / "report.json"
    result = api.offload(str(card), [str(d) for d in dests], jobs=jobs,
                         json_path=str(json_path))
    render_summary(console, result.report, None)
    console.print()
    console.print(f"Copies:       {dests[0]}  and  {dests[1]}")
    console.print(f"Previews:     {dests[0] / '.ingest' / 'previews'}")
    reports = sorted((dests[0] / ".ingest" / "reports").glob("*.html"))
    if reports:
        console.print(f"HTML report:  {reports[-1]}")
    console.print(f"JSON report:  {json_path}")
    console.print(f"Catalogs:     {dests[0] / '.ingest' / 'catalog.sqlite'} (one per destination)")
    console.print(f"Try it again: ingest offload {os.path.relpath(card)} "
                  f"{' '.join(os.path.relpath(d) for d in dests)}")
    flagged = sorted(r.path for r in result.records if r.flagged)
    if flagged == sorted(manifest.damaged):
        console.print("The demo worked: the damaged file was caught and every other file is "
                      "verified in two places.")
        if not result.report["summary"]["safe_to_format"]:
            console.print("Here the sample card and both archives are folders on one disk, so "
                          "no copy counts toward safe to format (see the warnings above); for "
                          "a real card, give destinations on two separate disks.")
        return 0
    console.print(f"Unexpected: flagged {flagged}, planted {manifest.damaged}")
    return result.exit_code or 1
