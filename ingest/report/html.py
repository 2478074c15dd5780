"""The HTML contact sheet of one offload or verify run.

One self-contained page (inline CSS, no fonts, no scripts, no network) that a tired
photographer can read at a glance: the verdict in large type, the files that need attention
first with what to do about each, then every other image as a thumbnail, then the rest.
Thumbnails are the JPEG previews beside the archive, linked by relative path so the report
folder can move together with its previews.
"""

from __future__ import annotations

import html
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from ingest.fsio import write_atomic
from ingest.model import ADVICE, FLAGGED, Status
from ingest.report.pairs import group_pairs

IMAGE_KINDS = frozenset({"raw", "jpeg", "heif", "tiff"})
_FLAGGED = frozenset(str(s) for s in FLAGGED)

# Words on the badge: the colour is a second channel, never the only one.
STATUS_LABELS: dict[str, str] = {
    Status.VERIFIED: "Verified",
    Status.RECOPIED: "Re-copied, verified",
    Status.DUPLICATE: "Already archived",
    Status.NEEDS_RECOPY: "Needs re-copy",
    Status.DAMAGED_ON_CARD: "Damaged on card",
    Status.UNREADABLE: "Unreadable",
    Status.UNVERIFIED: "Not proven",
    Status.CORRUPT: "Corrupt copy",
    Status.MISSING: "Missing",
    Status.DAMAGED: "Damaged",
    Status.UNTRACKED: "Untracked",
    Status.SKIPPED: "Not checked yet",
    Status.ACCEPTED: "Accepted as lost",
}
_TONES: dict[str, str] = {
    Status.VERIFIED: "ok", Status.RECOPIED: "ok", Status.DUPLICATE: "ok",
    Status.UNTRACKED: "neutral", Status.SKIPPED: "neutral", Status.UNVERIFIED: "warn",
    Status.ACCEPTED: "warn",
}
_STATUS_ORDER = [str(s) for s in Status if s in FLAGGED] + [str(s) for s in Status if s not in FLAGGED]

# Characters that would hide or disguise part of a card file name if rendered as-is.
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Any character _text shows differently; text without one only needs escaping. Checked first
# because the per-character walk was most of the page's cost (0.14 s for 1,000 files).
_SPECIAL = re.compile("[\x00-\x1f\x7f\ud800-\udfff" + "".join(sorted(_BIDI_CONTROLS)) + "]")

_NOTHING_DECODED = "Nothing could be decoded"
_NO_PREVIEW = "No preview"
_PREVIEW_FILE_MISSING = "Preview file is missing"
_NO_PREVIEW_FOLDER = "Preview not included with this report"


def default_html_path(report: dict, destination_root: Path) -> Path:
    """`<destination root>/.ingest/reports/<command>-<YYYYmmdd-HHMMSS>.html` for a run."""
    command = "".join(c for c in str(report.get("command") or "report") if c.isalnum()) or "report"
    started = _parse_time(report.get("started_at"))
    stamp = started.strftime("%Y%m%d-%H%M%S") if started else "undated"
    return Path(destination_root) / ".ingest" / "reports" / f"{command}-{stamp}.html"


def write_html(report: dict, out_path: Path, preview_root: Path | None) -> Path:
    """Render `report` (the ingest-report/1 JSON dict) to `out_path`, atomically.

    `preview_root` is the `.ingest/previews` folder whose JPEGs the page shows, or None when
    the page has no previews to show. Raises OSError only when the page itself can't be written.
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    page = render_html(report, out_path.parent, preview_root)
    # Lone surrogates (undecodable card names) were already made visible; "replace" is a last guard.
    _write_atomically(out_path, page.encode("utf-8", errors="replace"))
    return out_path


def render_html(report: dict, out_dir: Path, preview_root: Path | None) -> str:
    """The page as a string; image paths are relative to `out_dir`, where the page will live."""
    files = [f for f in report.get("files") or [] if isinstance(f, dict)]
    attention: list[list[dict]] = []
    images: list[list[dict]] = []
    others: list[dict] = []
    for unit in group_pairs(files):
        if any(_is_flagged(r) for r in unit):
            attention.append(unit)
        elif any(r.get("kind") in IMAGE_KINDS for r in unit):
            images.append(unit)
        else:
            others.extend(unit)

    thumbs = _ThumbFinder(Path(out_dir), Path(preview_root) if preview_root is not None else None)
    flagged_files = sum(1 for f in files if _is_flagged(f))
    image_files = sum(len(u) for u in images)

    parts = [_page_head(report), _header(report, files)]
    parts.append(
        '<nav aria-label="Sections">'
        f'<a href="#attention">Needs attention ({flagged_files})</a>'
        f'<a href="#images">Images ({image_files})</a>'
        f'<a href="#other">Other files ({len(others)})</a></nav>'
    )

    parts.append('<main><section id="attention" aria-labelledby="h-attention">')
    parts.append(f'<h2 id="h-attention">Needs attention <span class="count">{_files(flagged_files)}</span></h2>')
    if attention:
        parts.append('<div class="grid attention-grid">')
        parts.extend(_tile(unit, thumbs, attention=True) for unit in attention)
        parts.append("</div>")
    else:
        parts.append('<p class="none">No file needs attention.</p>')
    parts.append("</section>")

    parts.append('<section id="images" aria-labelledby="h-images">')
    parts.append(f'<h2 id="h-images">Images <span class="count">{_files(image_files)}'
                 "; a RAW+JPEG pair shares one tile</span></h2>")
    if images:
        parts.append('<div class="grid image-grid">')
        parts.extend(_tile(unit, thumbs, attention=False) for unit in images)
        parts.append("</div>")
    else:
        parts.append('<p class="none">No other images.</p>')
    parts.append("</section>")

    parts.append('<section id="other" aria-labelledby="h-other">')
    parts.append(f'<h2 id="h-other">Other files <span class="count">{_files(len(others))}</span></h2>')
    parts.append(_other_table(others) if others else '<p class="none">No other files.</p>')
    parts.append("</section></main>")

    parts.append(
        f'<footer>Written by ingest {_text(report.get("tool_version") or "")}'
        f' · report format {_text(report.get("schema") or "unknown")}</footer></body></html>\n'
    )
    return "".join(parts)


# ---------------------------------------------------------------------------- header


def _page_head(report: dict) -> str:
    command = str(report.get("command") or "ingest")
    started = _when(report.get("started_at"))
    title = f"ingest {command} report{' · ' + started if started else ''}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="dark">'
        f"<title>{_text(title)}</title><style>{_CSS}</style></head><body>"
    )


def _header(report: dict, files: list[dict]) -> str:
    command = str(report.get("command") or "")
    summary = report.get("summary") if isinstance(report.get("summary"), dict) else {}
    flagged = summary.get("flagged")
    if not isinstance(flagged, int):
        flagged = sum(1 for f in files if _is_flagged(f))
    verdict = summary.get("verdict") or _derive_verdict(report, files, flagged)
    if flagged:
        tone = "bad"
    elif command == "offload" and summary.get("safe_to_format") is False:
        tone = "warn"
    else:
        tone = "ok"

    total_files = summary.get("files") if isinstance(summary.get("files"), int) else len(files)
    total_bytes = summary.get("bytes")
    if not isinstance(total_bytes, int):
        total_bytes = sum(int(f.get("size") or 0) for f in files)

    started = _when(report.get("started_at"))
    kicker = f"ingest {command} report" + (f" · {started}" if started else "")
    out = [f'<header><p class="kicker">{_text(kicker)}</p>',
           f'<h1 class="verdict {tone}">{_text(verdict, keep_newlines=True)}</h1>']
    stopped = report.get("source_error")
    if isinstance(stopped, dict) and stopped.get("message"):
        out.append(f'<p class="stopped">{_text(stopped["message"])}</p>')
    out.append('<div class="facts-row"><dl class="facts">')

    if report.get("source"):
        out.append(f'<dt>Card</dt><dd class="path">{_text(report["source"])}</dd>')
    out.append(f"<dt>{'Copied to' if command == 'offload' else 'Archive'}</dt><dd>{_destinations(report)}</dd>")

    seconds = report.get("seconds")
    if isinstance(seconds, (int, float)) and seconds > 0:
        speed = total_bytes / seconds / 1e6
        time_text = f"{_duration(seconds)} at {speed:.1f} MB/s"
    else:
        time_text = "not recorded"
    span = _span(report.get("started_at"), report.get("finished_at"))
    if span:
        time_text += f" ({span})"
    out.append(f"<dt>Time</dt><dd>{_text(time_text)}</dd>")

    files_text = f"{_files(total_files)}, {_size(total_bytes)}"
    skipped = report.get("skipped_system_files")
    if isinstance(skipped, int) and skipped:
        files_text += f"; {skipped} camera/system {'file' if skipped == 1 else 'files'} left out"
    out.append(f"<dt>Files</dt><dd>{_text(files_text)}</dd>")

    versions = report.get("versions") if isinstance(report.get("versions"), dict) else {}
    if versions:
        joined = " · ".join(f"{k} {v}" for k, v in versions.items())
        out.append(f'<dt>Software</dt><dd class="versions">{_text(joined)}</dd>')
    out.append("</dl>")
    out.append(_status_table(summary, files))
    out.append("</div></header>")
    return "".join(out)


def _derive_verdict(report: dict, files: list[dict], flagged: int) -> str:
    command = report.get("command")
    if flagged:
        need = "file needs" if flagged == 1 else "files need"
        if command == "verify":
            return f"{flagged} {need} attention: restore from a good copy"
        return f"{flagged} {need} attention: do not format this card"
    if command == "verify":
        return f"All {_files(len(files))} checked are intact"
    # Without the report's own verdict, safe to format is unknown: never claim it here.
    return f"All {_files(len(files))} verified"


def _destinations(report: dict) -> str:
    items = []
    for dest in report.get("destinations") or []:
        if not isinstance(dest, dict):
            continue
        line = f'<span class="path">{_text(dest.get("root") or "?")}</span>'
        if isinstance(dest.get("files"), int):
            line += f' <span class="muted">{_text(_files(dest["files"]))}, {_size(dest.get("bytes"))}</span>'
        if dest.get("error"):
            line += f' <span class="badge bad">! Error</span> {_text(dest["error"], keep_newlines=True)}'
        items.append(f"<li>{line}</li>")
    return f'<ul class="plain">{"".join(items)}</ul>' if items else "none"


def _status_table(summary: dict, files: list[dict]) -> str:
    counts: dict[str, list[int]] = {}
    by_status = summary.get("by_status")
    if isinstance(by_status, dict) and by_status:
        for status, entry in by_status.items():
            if isinstance(entry, dict):
                counts[str(status)] = [int(entry.get("files") or 0), int(entry.get("bytes") or 0)]
    else:
        for f in files:
            entry = counts.setdefault(str(f.get("status")), [0, 0])
            entry[0] += 1
            entry[1] += int(f.get("size") or 0)
    known = [s for s in _STATUS_ORDER if counts.get(s, [0])[0]]
    unknown = sorted(s for s in counts if s not in _STATUS_ORDER and counts[s][0])
    rows = []
    for status in known + unknown:
        n, size = counts[status]
        rows.append(f"<tr><td>{_badge(status)}</td><td class='num'>{n}</td>"
                    f"<td class='num'>{_size(size)}</td>"
                    f"<td class='advice-cell'>{_text(ADVICE.get(status, ''))}</td></tr>")
    if not rows:
        return ""
    return ('<table class="statuses"><caption>Files by status</caption><thead><tr>'
            '<th scope="col">Status</th><th scope="col">Files</th><th scope="col">Size</th>'
            '<th scope="col">What it means</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


# ---------------------------------------------------------------------------- tiles


@dataclass(frozen=True, slots=True)
class _Thumb:
    src: str | None  # URL relative to the page
    width: int
    height: int
    words: str  # what the tile says instead of a picture


class _ThumbFinder:
    def __init__(self, out_dir: Path, preview_root: Path | None):
        self.out_dir = os.path.abspath(out_dir)
        self.preview_root = preview_root

    def for_unit(self, unit: list[dict]) -> _Thumb:
        # The camera's JPEG shows what the photographer saw; the RAW's preview is the fallback.
        candidates = sorted(unit, key=lambda r: r.get("kind") == "raw")
        words = ""
        for record in candidates:
            preview = record.get("preview")
            if not preview:
                continue
            if self.preview_root is None:
                words = words or _NO_PREVIEW_FOLDER
                continue
            path = _inside(self.preview_root, str(preview))
            if path is None or not path.is_file():
                words = words or _PREVIEW_FILE_MISSING
                continue
            width, height = _image_size(path)
            return _Thumb(self._url(path), width, height, "")
        if words:
            return _Thumb(None, 0, 0, words)
        if any(_decode_failed(r) for r in unit):
            return _Thumb(None, 0, 0, _NOTHING_DECODED)
        return _Thumb(None, 0, 0, _NO_PREVIEW)

    def _url(self, path: Path) -> str:
        target = os.path.abspath(path)
        try:
            rel = PurePosixPath(Path(os.path.relpath(target, self.out_dir))).as_posix()
        except ValueError:  # another drive on Windows: no relative path exists
            return Path(target).as_uri()
        # fsencode keeps undecodable name bytes as the very bytes, which %XX then names exactly.
        return quote(os.fsencode(rel), safe="/")


def _tile(unit: list[dict], thumbs: _ThumbFinder, attention: bool) -> str:
    thumb = thumbs.for_unit(unit)
    lead = unit[0]
    label = " + ".join(_basename(r) for r in unit)
    if thumb.src:
        picture = (f'<img src="{thumb.src}" width="{thumb.width}" height="{thumb.height}" '
                   f'loading="lazy" decoding="async" alt="Preview of {_text(label)}">')
    else:
        picture = f'<p class="nothumb">{_text(thumb.words)}</p>'

    file_lines = "".join(
        f'<li><span class="name">{_text(_basename(r))}</span> {_badge(str(r.get("status")))}</li>'
        for r in unit
    )
    folder = _folder(lead)
    shot = " · ".join(x for x in (_capture_time(unit), _camera(unit)) if x)
    body = [f'<ul class="files">{file_lines}</ul>']
    if folder:
        body.append(f'<p class="folder path">{_text(folder)}</p>')
    body.append(f'<p class="shot">{_text(shot) if shot else "No capture time or camera recorded"}</p>')
    # An accepted loss is not a problem to act on, but its reason is shown wherever it is.
    body.extend(_problem(r, named=len(unit) > 1) for r in unit
                if _is_flagged(r) or r.get("status") == Status.ACCEPTED)
    klass = "tile attention" if attention else "tile"
    return (f'<article class="{klass}"><div class="thumb">{picture}</div>'
            f'<div class="body">{"".join(body)}</div></article>')


def _problem(record: dict, named: bool) -> str:
    status = str(record.get("status"))
    reason = str(record.get("detail") or "")
    decode = record.get("decode") if isinstance(record.get("decode"), dict) else {}
    if not reason and decode.get("error"):
        reason = str(decode["error"])
    prefix = f"<b>{_text(_basename(record))}:</b> " if named else ""
    advice = ADVICE.get(status, "Check this file by hand.")
    out = [f'<div class="problem"><p class="reason">{prefix}{_text(reason or STATUS_LABELS.get(status, status), keep_newlines=True)}</p>']
    if advice.split(":")[0] not in reason:  # the detail may already say what to do
        out.append(f'<p class="advice"><b>What to do:</b> {_text(advice)}</p>')
    copies = [c for c in record.get("copies") or [] if isinstance(c, dict)]
    # A copy of a file damaged on the card is faithful, yet holds the same damage: not "good".
    faithful = status in ("damaged_on_card", "damaged", "unverified", "accepted")
    if copies:
        out.append('<ul class="copies plain">')
        for copy in copies:
            good = copy.get("verified")
            if good and faithful:
                mark = '<span class="badge neutral">= Same bytes as the card</span>'
            elif good:
                mark = '<span class="badge ok">✓ Good copy</span>'
            else:
                mark = '<span class="badge bad">! Bad copy</span>'
            where = f'{copy.get("destination") or ""}/{copy.get("path") or ""}'
            out.append(f'<li>{mark} <span class="path">{_text(where)}</span></li>')
        out.append("</ul>")
    out.append("</div>")
    return "".join(out)


def _other_table(records: list[dict]) -> str:
    rows = []
    for r in records:
        folder = _folder(r)
        folder_html = f'<br><span class="folder path">{_text(folder)}</span>' if folder else ""
        rows.append(f'<tr><td><span class="name">{_text(_basename(r))}</span>{folder_html}</td>'
                    f'<td>{_text(r.get("kind") or "")}</td><td class="num">{_size(r.get("size"))}</td>'
                    f'<td>{_badge(str(r.get("status")))}</td></tr>')
    return ('<table class="others"><thead><tr><th scope="col">Name</th><th scope="col">Kind</th>'
            '<th scope="col">Size</th><th scope="col">Status</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _badge(status: str) -> str:
    tone = "bad" if status in _FLAGGED else _TONES.get(status, "neutral")
    mark = {"ok": "✓", "bad": "!", "warn": "!"}.get(tone, "·")
    label = STATUS_LABELS.get(status, status)
    return f'<span class="badge {tone}">{mark} {_text(label)}</span>'


# ---------------------------------------------------------------------------- small helpers


def _is_flagged(record: dict) -> bool:
    return str(record.get("status")) in _FLAGGED


def _decode_failed(record: dict) -> bool:
    decode = record.get("decode")
    return isinstance(decode, dict) and (decode.get("ok") is False or decode.get("verdict") not in (None, "ok"))


def _basename(record: dict) -> str:
    return PurePosixPath(str(record.get("path") or "?")).name or str(record.get("path") or "?")


def _folder(record: dict) -> str:
    parent = str(PurePosixPath(str(record.get("path") or "")).parent)
    return "" if parent == "." else parent


def _capture_time(unit: list[dict]) -> str:
    for r in unit:
        if r.get("capture_time"):
            return str(r["capture_time"]).replace("T", " ")
    return ""


def _camera(unit: list[dict]) -> str:
    for r in unit:
        make = str(r.get("camera_make") or "").strip()
        model = str(r.get("camera_model") or "").strip()
        if not (make or model):
            continue
        # "NIKON CORPORATION" + "NIKON D850" reads better as just the model.
        if make and model and model.casefold().startswith(make.split()[0].casefold()):
            return model
        return f"{make} {model}".strip()
    return ""


def _inside(root: Path, rel: str) -> Path | None:
    """root/rel, refusing a preview path that would point outside the preview folder."""
    posix = PurePosixPath(rel)
    if posix.is_absolute() or ".." in posix.parts or not posix.parts:
        return None
    return root.joinpath(*posix.parts)


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image  # lazy: a run without previews need not import PIL

    try:
        with Image.open(path) as im:  # reads the header only
            width, height = im.size
            if width > 0 and height > 0:
                return width, height
    except Exception:  # an unreadable header only costs the tile its true proportions
        pass
    return 300, 200


def _text(value: object, keep_newlines: bool = False) -> str:
    """HTML-escaped text with invisible or disguising characters shown as visible marks."""
    text = str(value)
    if not _SPECIAL.search(text):
        return html.escape(text, quote=True)
    out = []
    for ch in text:
        cp = ord(ch)
        if ch in "\n\t" and keep_newlines:
            out.append(ch)
        elif cp < 0x20:
            out.append(chr(0x2400 + cp))  # the Unicode "control picture", e.g. ␊ for a newline
        elif cp == 0x7F:
            out.append("\u2421")
        elif 0xDC80 <= cp <= 0xDCFF:
            out.append(f"[{cp - 0xDC00:02X}]")  # a name byte that was not UTF-8 (surrogateescape)
        elif 0xD800 <= cp <= 0xDFFF:
            out.append("\ufffd")
        elif ch in _BIDI_CONTROLS:
            out.append(f"[U+{cp:04X}]")
        else:
            out.append(ch)
    return html.escape("".join(out), quote=True)


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def _size(value: object) -> str:
    try:
        n = float(value or 0)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "?"
    if n < 1000:
        return f"{int(n)} B"
    for unit in ("kB", "MB", "GB", "TB"):
        n /= 1000
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if n < 100 else f"{n:.0f} {unit}"
    return "?"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def _parse_time(value: object) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def _when(value: object) -> str:
    parsed = _parse_time(value)
    if parsed is None:
        return str(value or "")
    zone = parsed.strftime("%Z") if parsed.tzinfo else ""
    return parsed.strftime("%Y-%m-%d %H:%M:%S") + (f" {zone}" if zone else "")


def _span(start: object, end: object) -> str:
    """"05:00:00 to 05:01:04 UTC" on one day (the date is in the heading), full stamps otherwise."""
    began, ended = _parse_time(start), _parse_time(end)
    if began is None or ended is None:
        return ""
    if began.date() == ended.date() and began.tzinfo == ended.tzinfo:
        zone = ended.strftime("%Z") if ended.tzinfo else ""
        return f"{began:%H:%M:%S} to {ended:%H:%M:%S}" + (f" {zone}" if zone else "")
    return f"{_when(start)} to {_when(end)}"


def _write_atomically(out_path: Path, data: bytes) -> None:
    write_atomic(out_path, data)


_CSS = """
:root{--bg:#19191b;--panel:#242427;--line:#3a3a3e;--text:#ececec;--muted:#b4b4b8;
--ok:#1f6b3a;--bad:#a3221b;--warn:#f0b429;--neutral:#55585e}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--text);
font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif}
header,main,nav,footer{padding:0 24px}
header{padding-top:16px}
.kicker{margin:0 0 8px;color:var(--muted);font-size:.95rem}
.verdict{margin:0 0 16px;padding:14px 20px;border-radius:8px;font-size:2.1rem;line-height:1.2;
font-weight:700;white-space:pre-line}
.verdict.ok{background:var(--ok);color:#fff}
.verdict.bad{background:var(--bad);color:#fff}
.verdict.warn{background:var(--warn);color:#111}
.stopped{margin:0 0 16px;font-weight:600;color:var(--bad)}
.facts-row{display:flex;flex-wrap:wrap;gap:12px 32px;align-items:flex-start}
.facts{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:4px 14px;margin:0;
flex:1 1 420px}
.facts dt{color:var(--muted)}
.facts dd{margin:0}
.plain{list-style:none;margin:0;padding:0}
.path,.name{overflow-wrap:anywhere}
.muted,.count,.folder{color:var(--muted)}
.versions{font-size:.9rem}
table{border-collapse:collapse}
caption{text-align:left;color:var(--muted);padding-bottom:4px}
th,td{padding:3px 10px 3px 0;text-align:left;vertical-align:top;border-bottom:1px solid var(--line)}
th{color:var(--muted);font-weight:600}
.num{text-align:right;white-space:nowrap}
.statuses{flex:1 1 460px;font-size:.92rem}
.advice-cell{color:var(--muted)}
nav{display:flex;gap:20px;padding-top:12px;padding-bottom:4px}
nav a{color:#9cc8ff}
h2{font-size:1.35rem;margin:22px 0 10px}
h2 .count{font-size:1rem;font-weight:400}
.none{color:var(--muted)}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:.85rem;font-weight:700;
white-space:nowrap}
.badge.ok{background:var(--ok);color:#fff}
.badge.bad{background:var(--bad);color:#fff}
.badge.warn{background:var(--warn);color:#111}
.badge.neutral{background:var(--neutral);color:#fff}
.grid{display:grid;gap:12px}
.image-grid{grid-template-columns:repeat(auto-fill,minmax(220px,1fr))}
.attention-grid{grid-template-columns:repeat(auto-fill,minmax(min(100%,560px),1fr))}
.tile{background:var(--panel);border:1px solid var(--line);border-radius:8px;overflow:hidden;
display:flex;flex-direction:column}
.image-grid .tile{content-visibility:auto;contain-intrinsic-size:auto 280px}
.tile.attention{flex-direction:row;border:2px solid var(--bad)}
.thumb{aspect-ratio:3/2;background:#0e0e0f;display:flex;align-items:center;justify-content:center}
.tile.attention .thumb{flex:0 0 240px;align-self:flex-start}
.thumb img{display:block;width:100%;height:100%;object-fit:contain}
.nothumb{margin:0;padding:12px;text-align:center;color:var(--muted);font-weight:600}
.body{padding:8px 10px 10px;min-width:0;flex:1}
.body p{margin:2px 0}
.files{list-style:none;margin:0 0 2px;padding:0}
.files li{margin:1px 0}
.name{font-weight:600}
.folder,.shot{font-size:.85rem}
.problem{margin-top:8px;padding-top:6px;border-top:1px solid var(--line)}
.reason{white-space:pre-line}
.advice{color:#ffd98a}
.copies{font-size:.85rem;margin-top:4px}
.others{width:100%}
footer{color:var(--muted);font-size:.85rem;padding-top:24px;padding-bottom:24px}
@media print{body{background:#fff;color:#000}.tile{break-inside:avoid;background:#fff}
.image-grid .tile{content-visibility:visible}.advice{color:#000}}
"""
