"""The rows of docs/detection.md: damage applied to real camera files, legitimate odd scenes,
and what the decode check said about each.

Nothing in that document is written by hand. Tests record rows through the `detection`
fixture:

- `detection.damage(fmt, sample, kind, size, offset, verdict, check, detail)`: one damaged copy
  of a real sample and its decode verdict (the seeded detection matrix,
  tests/test_detection_matrix.py). `kind` is the damage kind ("truncation", "zero fill",
  "0xFF fill", "bit-flip burst", "single bit flip", ...), `size` its size in bytes (an int) or a
  label ("kept 90 %"), `offset` where it was applied (an int, or a label naming seed and
  offset), `check` the decode check that failed (empty when none did). Keyword-only extras:
  `coding` (how the image data is coded: "lossless JPEG", "uncompressed", "HEVC", ...) and
  `blind` (why a decode cannot be expected to see this damage: the cell is then listed under
  "Damage only the checksum can catch" instead of being held to a catch rate).
- `detection.scene(scene, source, fmt, verdict, detail)`: a legitimate but unusual image (a
  black frame, a blown sky, a scanner border, ...) and its verdict; it must not be called
  damaged (tests/test_legit_scenes.py).

Rows are JSON lines in the file named by INGEST_DETECTION_OUT (default: a new temporary file
per pytest session). At the end of the session, with INGEST_WRITE_DETECTION=1, they are rendered
into docs/detection.md. Registered as a pytest plugin in tests/conftest.py (`pytest_plugins`),
or with `-p detection_table` and tests/ on the path.

A damaged copy counts as caught when its verdict is "damaged". "unsupported" is NOT caught (damage
must never pass as an unsupported format) and is listed on its own, as are "crashed" and
"timeout" (a worker that died or hung: a failure of the test, never a catch).
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest
from doc_rows import OutcomeLog, RowFile

ROWS_ENV = "INGEST_DETECTION_OUT"
WRITE_ENV = "INGEST_WRITE_DETECTION"
FULL_MATRIX_ENV = "INGEST_FULL_MATRIX"  # the same switch as tests/reliability_table.py
DOC = Path(__file__).resolve().parents[1] / "docs" / "detection.md"
COMMAND = ("INGEST_FULL_MATRIX=1 INGEST_WRITE_DETECTION=1 .venv/bin/python -m pytest -q "
           "-p no:cacheprovider tests/test_detection_matrix.py tests/test_legit_scenes.py")

CAUGHT = "damaged"
# The order of the damage kinds in the document; kinds not listed follow in name order.
KINDS = ["truncation", "zero fill", "0xFF fill", "bit-flip burst", "single bit flip"]
# The aim line: this share of fills of this size caught where the data are compressed (rows
# without a `blind` reason).
AIM, AIM_SIZE, AIM_KINDS = 0.95, 4096, ("zero fill", "0xFF fill")

_OUTCOMES = pytest.StashKey[dict[str, str]]()
ROWS = RowFile(ROWS_ENV, "ingest-detection-")


def rows_path(config: pytest.Config) -> str:
    return ROWS.path(config)


class Recorder:
    """Appends one JSON line per damaged copy or scene; bound to one test."""

    def __init__(self, path: str, nodeid: str):
        self.path = path
        self.nodeid = nodeid

    def _write(self, line: dict) -> None:
        line["test"] = self.nodeid
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps(line, ensure_ascii=True) + "\n")

    def damage(self, fmt: str, sample: str, kind: str, size: int | str, offset: int | str,
               verdict: str, check: str, detail: str, *, coding: str = "",
               blind: str = "") -> None:
        self._write({"type": "damage", "format": str(fmt), "sample": str(sample),
                     "kind": str(kind), "size": size if isinstance(size, int) else str(size),
                     "offset": offset if isinstance(offset, int) else str(offset),
                     "verdict": str(verdict), "check": str(check or ""),
                     "detail": str(detail or ""), "coding": str(coding), "blind": str(blind)})

    def scene(self, scene: str, source: str, fmt: str, verdict: str, detail: str) -> None:
        self._write({"type": "scene", "scene": str(scene), "source": str(source),
                     "format": str(fmt), "verdict": str(verdict), "detail": str(detail or "")})


@pytest.fixture(name="detection")
def detection_fixture(request) -> Recorder:
    return Recorder(rows_path(request.config), request.node.nodeid)


# --- pytest hooks ----------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    log = OutcomeLog()
    config.stash[_OUTCOMES] = log.outcomes
    config.pluginmanager.register(log, "ingest-detection-outcomes")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not ROWS.used(session.config):
        return  # no detection test ran
    rows = ROWS.take(session.config)
    if os.environ.get(WRITE_ENV) != "1" or not rows:
        return
    args = " ".join(shlex.quote(a) for a in session.config.invocation_params.args)
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(render(rows, session.config.stash[_OUTCOMES], args), encoding="utf-8")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"detection table: {len(rows)} rows written to {DOC}")


# --- the document ----------------------------------------------------------------------------


def library_versions() -> list[str]:
    """The decoders a verdict rests on, as this process has them."""
    out = []
    try:
        import rawpy

        out.append(f"rawpy {rawpy.__version__} (LibRaw "
                   f"{'.'.join(str(p) for p in rawpy.libraw_version)})")
    except Exception as exc:  # noqa: BLE001
        out.append(f"rawpy unavailable ({exc})")
    try:
        import simplejpeg

        out.append(f"simplejpeg {simplejpeg.__version__} (libjpeg-turbo, bundled)")
    except Exception as exc:  # noqa: BLE001
        out.append(f"simplejpeg unavailable ({exc})")
    try:
        import pillow_heif

        libheif = getattr(pillow_heif, "libheif_version", lambda: "?")()
        out.append(f"pillow-heif {pillow_heif.__version__} (libheif {libheif})")
    except Exception as exc:  # noqa: BLE001
        out.append(f"pillow-heif unavailable ({exc})")
    try:
        import PIL

        out.append(f"Pillow {PIL.__version__}")
    except Exception:  # noqa: BLE001
        pass
    try:
        import av

        ffmpeg = ".".join(str(p) for p in av.library_versions.get("libavcodec", ()))
        out.append(f"PyAV {av.__version__} (libavcodec {ffmpeg})")
    except Exception:  # noqa: BLE001 - optional
        pass
    return out


def _code_state() -> str:
    """The commit the verdicts come from, and any uncommitted change to the decoders."""
    root = DOC.parents[1]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "ingest"],
                               capture_output=True, text=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "ingest (not a git checkout)"
    changed = sorted(line[3:] for line in dirty if line.strip())
    return f"ingest at commit {head}" + (
        f" with uncommitted changes to {', '.join(changed)}" if changed else "")


def _cell(text: object) -> str:
    s = str(text).encode("utf-8", "backslashreplace").decode("utf-8")
    s = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in s)
    return s.replace("|", "\\|")


def size_label(size: int | str) -> str:
    if not isinstance(size, int):
        return str(size)
    for unit, n in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= n and size % n == 0:
            return f"{size // n} {unit}"
    return f"{size} B"


def _size_key(size: int | str) -> tuple:
    return (0, size, "") if isinstance(size, int) else (1, 0, str(size))


def _kind_key(kind: str) -> tuple:
    return (KINDS.index(kind), "") if kind in KINDS else (len(KINDS), kind)


def _rate(rows: list[dict]) -> str:
    caught = sum(r["verdict"] == CAUGHT for r in rows)
    return f"{caught}/{len(rows)} ({100 * caught / len(rows):.0f} %)" if rows else "–"


def _share(rows: list[dict]) -> float:
    return sum(r["verdict"] == CAUGHT for r in rows) / len(rows) if rows else 0.0


def render(rows: list[dict], outcomes: dict[str, str], args: str = "") -> str:
    damage = [r for r in rows if r["type"] == "damage"]
    scenes = [r for r in rows if r["type"] == "scene"]
    full = os.environ.get(FULL_MATRIX_ENV) == "1"
    formats = sorted({r["format"] for r in damage})
    kinds = sorted({r["kind"] for r in damage}, key=_kind_key)
    cells: dict[tuple, list[dict]] = defaultdict(list)
    for r in damage:
        cells[(r["format"], r["kind"], r["size"])].append(r)
    verdicts = Counter(r["verdict"] for r in damage)
    # Every test of the modules that recorded rows: an assertion that failed records none.
    modules = {r["test"].split("::", 1)[0] for r in rows}
    tests = {r["test"] for r in rows} | {t for t in outcomes if t.split("::", 1)[0] in modules}
    results = Counter(outcomes.get(t, "not run") for t in tests)
    failed = sorted(t for t in tests if outcomes.get(t) == "failed")
    lines = [
        "# Detection: which damage the decode check catches, and which only the checksum can",
        "",
        "Generated by the test suite; do not edit by hand. Regenerate with:",
        "",
        "```sh",
        COMMAND,
        "```",
        "",
        f"Generated {datetime.now(UTC):%Y-%m-%d} on {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, by `pytest {_cell(args)}`; matrix: "
        f"{'full (INGEST_FULL_MATRIX=1)' if full else 'the CI sample (no INGEST_FULL_MATRIX)'}.",
        "",
        "Decoders: " + "; ".join(library_versions()) + f". Code: {_code_state()}.",
        "",
        "Every damaged copy of a real camera file (../shared/samples: raw, jpeg, heif) is decoded "
        "the way an offload decodes it: `DecodePool` worker processes running `run_task`. A copy "
        "is **caught** when its verdict is `damaged`. `unsupported` is not caught (damage must not "
        "pass as a format ingest cannot read) and is counted on its own, as are `crashed` and "
        "`timeout`. Offsets are seeded and lie inside the coded image data (strips, tiles, the "
        "entropy-coded scan, the HEVC data), found by the locators in fixtures/damage.py.",
        "",
        "## Totals",
        "",
        "| damaged copies | caught | not caught (ok) | unsupported | crashed | timeout | "
        "scenes | tests | results |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        f"| {len(damage)} | {verdicts[CAUGHT]} | {verdicts['ok']} | {verdicts['unsupported']} | "
        f"{verdicts['crashed']} | {verdicts['timeout']} | {len(scenes)} | {len(tests)} | "
        + ", ".join(f"{n} {k}" for k, n in sorted(results.items())) + " |",
        "",
    ]
    if failed:
        lines += ["Failed in this run: " + ", ".join(f"`{_cell(t.split('::', 1)[-1])}`"
                                                      for t in failed) + ".", ""]
    if damage:
        lines += _aim(damage)
        lines += _matrix(damage, formats, kinds, cells)
        lines += _per_sample(damage, kinds)
        lines += _checks(damage, formats)
        lines += _misses(damage)
    lines += _scenes(scenes, outcomes)
    lines += _blind(damage, cells)
    return "\n".join(lines).rstrip() + "\n"


def _matrix(damage, formats, kinds, cells) -> list[str]:
    codings = {}
    for r in damage:
        codings.setdefault(r["format"], r.get("coding", ""))
    lines = ["## The matrix: format × damage × size", "",
             "Share caught (caught/total). Truncation sizes are the share of the coded image "
             "data kept (the file is cut there); fill and burst sizes are bytes. A cell marked † "
             "is one a decode cannot be expected to see (see \"Damage only the checksum can "
             "catch\").", ""]
    for kind in kinds:
        sizes = sorted({r["size"] for r in damage if r["kind"] == kind}, key=_size_key)
        lines += [f"### {kind}", "",
                  "| format | image data | " + " | ".join(size_label(s) for s in sizes) + " |",
                  "|---|---|" + "---:|" * len(sizes)]
        for fmt in formats:
            row = []
            for s in sizes:
                got = cells.get((fmt, kind, s), [])
                mark = " †" if got and any(r.get("blind") for r in got) else ""
                row.append(_rate(got) + mark if got else "–")
            if any(c != "–" for c in row):
                lines.append(f"| {_cell(fmt)} | {_cell(codings.get(fmt, ''))} | "
                             + " | ".join(row) + " |")
        lines.append("")
    return lines


def _per_sample(damage, kinds) -> list[str]:
    samples = sorted({(r["format"], r["sample"]) for r in damage})
    lines = ["## Per sample", "",
             "Share caught per sample file and damage kind (all sizes together).", "",
             "| sample | format | " + " | ".join(kinds) + " |",
             "|---|---|" + "---:|" * len(kinds)]
    for fmt, sample in samples:
        mine = [r for r in damage if r["sample"] == sample and r["format"] == fmt]
        lines.append(f"| `{_cell(sample)}` | {_cell(fmt)} | " + " | ".join(
            _rate([r for r in mine if r["kind"] == k]) for k in kinds) + " |")
    lines.append("")
    return lines


def _checks(damage, formats) -> list[str]:
    names = sorted({r["check"] or "(none)" for r in damage if r["verdict"] == CAUGHT})
    lines = ["## Which check caught it", "",
             "Caught copies per format by the first check in the decode result that failed, as "
             "the decoder names it (`unpack`, `decode`, `open`, `scan_data`: the decoder itself "
             "raised; the others are ingest's own structure and content checks).", "",
             "| format | " + " | ".join(f"`{n}`" for n in names) + " |",
             "|---|" + "---:|" * len(names)]
    for fmt in formats:
        got = Counter(r["check"] or "(none)" for r in damage
                      if r["format"] == fmt and r["verdict"] == CAUGHT)
        lines.append(f"| {_cell(fmt)} | " + " | ".join(str(got[n]) for n in names) + " |")
    lines.append("")
    lines += [f"- `{n}`: {CHECK_MEANINGS[n]}" for n in names if n in CHECK_MEANINGS]
    lines.append("")
    return lines


# What each check that can decide "damaged" proves (ingest/decode/*.py say why in full).
CHECK_MEANINGS = {
    "unpack": "LibRaw raised while unpacking the sensor data (corrupt or missing data)",
    "open": "LibRaw could not even identify the file, and its structure shows damage",
    "scan_data": "strict libjpeg-turbo found the JPEG's entropy-coded data corrupt",
    "lj92_tiles": "a lossless-JPEG tile's samples do not account for its stored bits",
    "dct_tiles": "FFmpeg's strict decode of a lossy DNG tile failed, or it decodes to one "
                 "textured 8x8 block repeated (decoded garbage)",
    "below_black": "runs of one value under half a black offset the data confirms",
    "low_bits": "a CRW's uncompressed low bits overwritten",
    "ramps": "exact ramps in sensor data (a broken predictor chain)",
    "structure": "data claimed past the end of the file, or boxes/IFDs that do not add up",
    "data_size": "too few bytes for the image the header claims, for any codec",
    "nal units": "an HEVC NAL unit that breaks the codec's rules (length, emulation)",
    "hevc decode": "FFmpeg's strict HEVC decode failed",
    "coverage": "HEVC slice data ended before every block of the picture was decoded",
    "decode": "the decoder raised",
    "clip": "the motion photo's appended clip does not demux or decode cleanly",
}


def _misses(damage) -> list[str]:
    odd = [r for r in damage if r["verdict"] in ("unsupported", "crashed", "timeout")]
    lines = ["## Damage reported as unsupported, crashed or timed out", ""]
    if not odd:
        return lines + ["None.", ""]
    lines += ["| verdict | format | sample | damage | size | offset | detail |",
              "|---|---|---|---|---:|---|---|"]
    for r in sorted(odd, key=lambda r: (r["verdict"], r["format"], r["sample"],
                                        _kind_key(r["kind"]), _size_key(r["size"]))):
        lines.append(f"| `{r['verdict']}` | {_cell(r['format'])} | `{_cell(r['sample'])}` | "
                     f"{_cell(r['kind'])} | {size_label(r['size'])} | {_cell(r['offset'])} | "
                     f"{_cell(r['detail'][:200])} |")
    lines.append("")
    return lines


def _scenes(scenes, outcomes) -> list[str]:
    lines = ["## Legitimate scenes", "",
             "Unusual but intact images (tests/test_legit_scenes.py): none may be called damaged.",
             ""]
    if not scenes:
        return lines + ["No scene rows were recorded in this run.", ""]
    lines += ["| scene | source | format | verdict | detail | test |", "|---|---|---|---|---|---|"]
    for r in sorted(scenes, key=lambda r: (r["scene"], r["source"])):
        name = r["test"].split("::", 1)[-1]
        lines.append(f"| {_cell(r['scene'])} | {_cell(r['source'])} | {_cell(r['format'])} | "
                     f"`{_cell(r['verdict'])}` | {_cell(r['detail'][:200])} | "
                     f"{_cell(outcomes.get(r['test'], 'not run'))}: `{_cell(name)}` |")
    lines.append("")
    return lines


def _blind(damage, cells) -> list[str]:
    lines = ["## Damage only the checksum can catch", "",
             "A decode proves a file decodes into a plausible image; it cannot prove the pixels "
             "are the camera's. Where the image data carries no redundancy (uncompressed samples, "
             "where every byte value is a legal pixel) or the damage is too small to break the "
             "code (one flipped bit changes one coefficient or one sample), the decode check "
             "cannot see it. There only the hash taken while reading the card, compared with the "
             "copy's, protects the file. These cells are recorded, not held to a catch rate; the "
             "share the decode caught anyway is shown per size.", ""]
    groups: dict[tuple[str, str, str], list[tuple[int | str, list[dict]]]] = defaultdict(list)
    for (fmt, kind, size), got in cells.items():
        reasons = sorted({r["blind"] for r in got if r.get("blind")})
        if reasons:
            groups[(fmt, kind, reasons[0])].append((size, got))
    if not groups:
        return lines + ["No such cells were recorded in this run.", ""]
    notes = sorted({reason for _f, _k, reason in groups})
    lines += ["| format | damage | caught by the decode anyway | why |", "|---|---|---|---|"]
    for (fmt, kind, reason), sized in sorted(groups.items(), key=lambda g: (
            g[0][0], _kind_key(g[0][1]))):
        shares = " · ".join(f"{size_label(size)} {_rate(got)}"
                            for size, got in sorted(sized, key=lambda sg: _size_key(sg[0])))
        lines.append(f"| {_cell(fmt)} | {_cell(kind)} | {shares} | [{notes.index(reason) + 1}] |")
    lines.append("")
    lines += [f"{n}. {_cell(reason)}" for n, reason in enumerate(notes, 1)]
    lines.append("")
    return lines


def _aim(damage) -> list[str]:
    """The aim line: small fills where the decode is expected to see them."""
    fills = [r for r in damage if r["kind"] in AIM_KINDS and r["size"] == AIM_SIZE
             and not r.get("blind")]
    lines = [f"## The aim: {size_label(AIM_SIZE)} zero and 0xFF fills in compressed data", "",
             f"At least {AIM:.0%} of {size_label(AIM_SIZE)} zero/0xFF fills caught in every "
             "sample whose image data is compressed (a decode can see damage there). Per sample:",
             ""]
    if not fills:
        return lines + ["No such fills were recorded in this run.", ""]
    lines += ["| sample | format | zero fill | 0xFF fill | both | aim met |",
              "|---|---|---:|---:|---:|---|"]
    for fmt, sample in sorted({(r["format"], r["sample"]) for r in fills}):
        mine = [r for r in fills if r["sample"] == sample and r["format"] == fmt]
        met = "yes" if _share(mine) >= AIM else "**no**"
        lines.append(f"| `{_cell(sample)}` | {_cell(fmt)} | "
                     + " | ".join(_rate([r for r in mine if r["kind"] == k]) for k in AIM_KINDS)
                     + f" | {_rate(mine)} | {met} |")
    lines.append("")
    return lines
