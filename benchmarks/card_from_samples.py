"""Build a benchmark card from the real camera samples in ../shared/samples.

Every replica must be a file of its own (unique bytes, so the catalog's duplicate detection
copies it) that still decodes exactly like its original. The unique bytes go where no decoder
looks:

- TIFF-based RAWs (DNG, NEF, KDC): appended after the end of the file; LibRaw reads TIFF
  structures through offsets and never looks at trailing bytes;
- CRW (CIFF): the root directory's offset is stored in the file's last 4 bytes, relative to
  the heap start, so the bytes are inserted just before those 4 bytes, which keep their value;
- QuickTake (QTK): appended; LibRaw reads the sensor data at a fixed offset;
- JPEG: a COM segment inserted after the APPn segments (EXIF stays first, the scan is untouched).

`verify_replicas` checks this claim with ingest's own decode check on a sample of replicas.

Run alone: .venv/bin/python benchmarks/card_from_samples.py CARD [--size 1G] [--small N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"
MANIFEST_SUFFIX = ".manifest.json"
FORMAT_VERSION = 2  # bump when the replica recipe changes, so cached cards are rebuilt
FILES_PER_FOLDER = 100
JPEG_EXTS = {".jpg", ".jpeg"}
# The small JPEGs (~160 KB) the per-file-overhead card is made of.
SMALL_JPEGS = ("nikon-e950.jpg", "nikon-coolpix-p6000-gps.jpg")


class SamplesMissing(SystemExit):
    pass


def samples_dir(root: Path = SAMPLES) -> Path:
    """The samples folder, or a clear exit when it is absent."""
    if not (root / "raw").is_dir() or not (root / "jpeg").is_dir():
        raise SamplesMissing(
            f"benchmark samples not found: expected {root}/raw and {root}/jpeg "
            "(the shared samples folder beside the checkout)")
    return root


def parse_size(text: str) -> int:
    """'1G', '500M', '10G' (decimal units, like a card's label) -> bytes."""
    units = {"K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    text = text.strip().upper().removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


# -------------------------------------------------------------------------------------------
# Unique variants of one file.

def container_of(data: bytes) -> str:
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if data[6:14] == b"HEAPCCDR":
        return "crw"
    if data[:4] in (b"qktk", b"qktn"):
        return "qtk"
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    raise ValueError(f"no recipe for unique replicas of a file starting {data[:16].hex()}")


def replicable(path: Path) -> bool:
    """Whether unique replicas of this sample can be made. A headerless raw, which LibRaw knows
    only by its exact size, cannot: any added byte makes it unreadable."""
    with open(path, "rb") as f:
        head = f.read(16)
    try:
        container_of(head)
    except ValueError:
        return False
    return True


def left_out_samples(samples: Path | None = None) -> list[str]:
    """The samples `build_card` leaves out, as kind/name."""
    samples = samples_dir(samples or SAMPLES)
    return [f"{kind}/{p.name}" for kind in ("raw", "jpeg")
            for p in sorted((samples / kind).iterdir()) if p.is_file() and not replicable(p)]


def jpeg_with_comment(data: bytes, text: bytes) -> bytes:
    """Insert a COM segment after SOI and the APPn segments that follow it."""
    if len(text) > 65533:
        raise ValueError("a COM segment holds at most 65533 bytes")
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF and 0xE0 <= data[pos + 1] <= 0xEF:
        (length,) = struct.unpack_from(">H", data, pos + 2)
        pos += 2 + length
    return data[:pos] + b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text + data[pos:]


def unique_variant(data: bytes, tag: bytes) -> bytes:
    """`data` with `tag` placed outside its image data (see the module docstring)."""
    kind = container_of(data)
    if kind in ("tiff", "qtk"):
        return data + tag
    if kind == "crw":
        return data[:-4] + tag + data[-4:]
    return jpeg_with_comment(data, tag)


def replica_tag(serial: int, name: str) -> bytes:
    # A varying length as well, so replicas differ in size like real frames do.
    pad = (serial * 7919) % 509
    return f"ingest-bench replica {serial} of {name};".encode() + b"\x00" * pad


# -------------------------------------------------------------------------------------------
# Cards.

@dataclass(slots=True)
class Card:
    root: Path
    files: int
    bytes: int
    raws: int
    jpegs: int
    verified: list[dict]  # the sampled replica checks

    def to_json(self) -> dict:
        return {"root": str(self.root), "files": self.files, "bytes": self.bytes,
                "raws": self.raws, "jpegs": self.jpegs, "verified": self.verified}


def _manifest_path(card: Path) -> Path:
    return card.with_name(card.name + MANIFEST_SUFFIX)


def _folder(index: int) -> str:
    number = 100 + index // FILES_PER_FOLDER
    if number > 999:
        raise ValueError("more files than DCIM folders 100..999 can hold")
    return f"DCIM/{number}SAMPL"


def _cached(card: Path, recipe: dict) -> Card | None:
    manifest = _manifest_path(card)
    try:
        saved = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return None
    if saved.get("recipe") != recipe:
        return None
    for rel, size in saved["sizes"].items():
        try:
            if (card / rel).stat().st_size != size:
                return None
        except OSError:
            return None
    c = saved["card"]
    return Card(card, c["files"], c["bytes"], c["raws"], c["jpegs"], c["verified"])


def _prepare(card: Path) -> None:
    """Empty the card folder, but only one this module built (it has a manifest)."""
    if card.exists():
        if not _manifest_path(card).exists() and any(card.iterdir()):
            raise SystemExit(f"{card} exists, is not empty and was not built by this tool: "
                             "refusing to delete it; choose another --card folder")
        shutil.rmtree(card)
    _manifest_path(card).unlink(missing_ok=True)
    card.mkdir(parents=True)


def _write(card: Path, plan: list[tuple[Path, str, str]], recipe: dict, check_every: int) -> Card:
    """plan: (original, kind, rel path on the card). Writes, verifies a sample, saves manifest."""
    originals: dict[Path, bytes] = {}
    sizes: dict[str, int] = {}
    sampled: dict[Path, list[tuple[str, bytes]]] = {}
    for serial, (orig, _kind, rel) in enumerate(plan):
        data = originals.setdefault(orig, orig.read_bytes())
        out = unique_variant(data, replica_tag(serial, orig.name))
        path = card / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(out)
        sizes[rel] = len(out)
        picks = sampled.setdefault(orig, [])
        if not picks or serial % check_every == 0 or serial == len(plan) - 1:
            picks.append((rel, out))
    os.sync()
    verified = verify_replicas(card, sampled, originals)
    bad = [v for v in verified if not v["same"]]
    if bad:
        raise SystemExit("replicas do not decode like their originals: "
                         + "; ".join(f"{v['replica']}: {v['replica_verdict']} vs "
                                     f"{v['original_verdict']}" for v in bad[:5]))
    kinds = [k for _o, k, _r in plan]
    result = Card(card, len(plan), sum(sizes.values()), kinds.count("raw"), kinds.count("jpeg"),
                  verified)
    _manifest_path(card).write_text(json.dumps(
        {"recipe": recipe, "card": {k: v for k, v in result.to_json().items() if k != "root"},
         "sizes": sizes}, indent=1))
    return result


def build_card(card: Path, size: int, samples: Path | None = None,
               check_every: int = 97) -> Card:
    """Whole rounds of every RAW and JPEG sample until the card holds at least `size` bytes.
    Reuses the card when its manifest matches."""
    samples = samples_dir(samples or SAMPLES)
    originals = [(p, kind) for kind in ("raw", "jpeg") for p in sorted((samples / kind).iterdir())
                 if p.is_file() and replicable(p)]
    per_round = sum(p.stat().st_size for p, _k in originals)
    rounds = max(1, -(-size // per_round))
    recipe = {"version": FORMAT_VERSION, "kind": "samples", "size": size,
              "originals": {p.name: p.stat().st_size for p, _k in originals}}
    cached = _cached(card, recipe)
    if cached:
        return cached
    _prepare(card)
    plan = []
    for r in range(rounds):
        for orig, kind in originals:
            n = len(plan)
            plan.append((orig, kind, f"{_folder(n)}/S{r:03d}_{n:05d}{orig.suffix}"))
    return _write(card, plan, recipe, check_every)


def build_small_card(card: Path, count: int, samples: Path | None = None,
                     check_every: int = 997) -> Card:
    """`count` unique copies of the small real JPEGs (~160 KB each): per-file overhead."""
    samples = samples_dir(samples or SAMPLES)
    originals = [samples / "jpeg" / name for name in SMALL_JPEGS]
    recipe = {"version": FORMAT_VERSION, "kind": "small", "count": count,
              "originals": {p.name: p.stat().st_size for p in originals}}
    cached = _cached(card, recipe)
    if cached:
        return cached
    _prepare(card)
    plan = [(originals[n % len(originals)], "jpeg", f"{_folder(n)}/DSCN{n:05d}.JPG")
            for n in range(count)]
    return _write(card, plan, recipe, check_every)


# -------------------------------------------------------------------------------------------
# The proof that replicas decode like their originals.

def _decode_summary(path: str, kind: str) -> tuple[str, list[tuple[str, bool]]]:
    from ingest.decode.task import run_task

    result = run_task({"path": path, "kind": kind, "card_path": None, "capture_time": None,
                       "preview": None})
    dec = result["decode"]
    return dec["verdict"], [(c["name"], bool(c["ok"])) for c in dec["checks"]]


def verify_replicas(card: Path, sampled: dict[Path, list[tuple[str, bytes]]],
                    originals: dict[Path, bytes]) -> list[dict]:
    """ingest's decode check on each original and its sampled replicas: same verdict, same
    checks passing. For RAWs the unpacked sensor data must also be identical."""
    out = []
    for orig, picks in sampled.items():
        kind = "jpeg" if orig.suffix.lower() in JPEG_EXTS else "raw"
        verdict, checks = _decode_summary(str(orig), kind)
        pixels = _raw_pixels(originals[orig]) if kind == "raw" else None
        for rel, data in picks:
            r_verdict, r_checks = _decode_summary(str(card / rel), kind)
            same = r_verdict == verdict and r_checks == checks
            if kind == "raw":
                import numpy as np

                same = same and np.array_equal(_raw_pixels(data), pixels)
            out.append({"replica": rel, "original": orig.name, "original_verdict": verdict,
                        "replica_verdict": r_verdict, "same": bool(same)})
    return out


def _raw_pixels(data: bytes):
    import io

    import rawpy

    with rawpy.RawPy() as raw:
        raw.open_buffer(io.BytesIO(data))
        return raw.raw_image.copy()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("card", type=Path)
    ap.add_argument("--size", default="1G", help="at least this many bytes (default 1G)")
    ap.add_argument("--small", type=int, default=0,
                    help="instead: a card of this many small JPEGs")
    args = ap.parse_args(argv)
    card = (build_small_card(args.card, args.small) if args.small
            else build_card(args.card, parse_size(args.size)))
    print(f"{card.root}: {card.files} files ({card.raws} RAW, {card.jpegs} JPEG), "
          f"{card.bytes / 1e6:.0f} MB; {len(card.verified)} replicas decode-checked, all alike")
    return 0


if __name__ == "__main__":
    sys.exit(main())
