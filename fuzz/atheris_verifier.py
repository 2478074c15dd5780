"""Coverage-guided fuzzing of the per-file verifier `ingest.decode.task.run_task` with atheris.

The quick, deterministic fuzzing lives in tests/test_fuzz.py; this is the long run:

    .venv/bin/pip install atheris
    .venv/bin/python fuzz/atheris_verifier.py --seeds /tmp/ingest-fuzz/corpus   # once: seeds
    .venv/bin/python fuzz/atheris_verifier.py /tmp/ingest-fuzz/corpus -max_total_time=3600 \\
        -timeout=60 -rss_limit_mb=4096 -artifact_prefix=/tmp/ingest-fuzz/findings/

Keep the corpus and findings outside the repository: they grow from ../shared/samples files.

Every other argument goes to libFuzzer (`-help=1` lists them). An input is one byte choosing the
file's extension (so its decoder), then the file's bytes. The harness checks the contract the
pipeline relies on: run_task returns, with a verdict in ok/damaged/unsupported, `ok` agreeing
with it and an error text for every failure, all of it JSON-serialisable; a preview it claims
to have written opens as a JPEG. A violation raises, a segfault or abort in a decoder (LibRaw,
libjpeg-turbo, libheif, tifffile's codecs) kills the process, a hang exceeds -timeout, and
memory past -rss_limit_mb is reported: libFuzzer saves each such input under -artifact_prefix.

Coverage guidance sees the Python code (our decoders and checks, tifffile, exifread); the C
libraries are not instrumented, so their paths are reached by mutation, not steered.

The seeds are the small real samples in ../shared/samples (when present) and generated files;
they are written to the corpus folder, outside the repository. To keep a finding as a
regression test, turn it into a recipe against its seed (never copy the bytes of a
../shared/samples file into the repository):

    .venv/bin/python fuzz/atheris_verifier.py --recipe /tmp/ingest-fuzz/findings/crash-... \\
        jpeg/nikon-e950.jpg
    # prints {"sample": ..., "ops": [...]}: add "why" and "expect", save in tests/fuzz_corpus/

`--replay FILE ...` runs saved inputs once each and prints their verdicts.
"""

from __future__ import annotations

import difflib
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT.parent / "shared" / "samples"
# The extension picks the decoder: RAW containers LibRaw parses differently, JPEG, TIFF, HEIF.
EXTENSIONS = [".DNG", ".NEF", ".CR2", ".CR3", ".CRW", ".RAF", ".RW2", ".ARW", ".ORF", ".KDC",
              ".QTK", ".X3F", ".JPG", ".TIF", ".HEIC"]
SEED_SAMPLES = ["raw/kodak-dc50.KDC", "raw/apple-quicktake150.QTK", "raw/apple-quicktake100.QTK",
                "jpeg/nikon-e950.jpg", "jpeg/apple-quicktake200.JPG", "stubs/exiftool-stub.dng",
                "stubs/exiftool-stub-panasonic.rw2", "stubs/exiftool-stub-canon.cr3",
                "stubs/exiftool-stub-canon.cr2", "stubs/exiftool-stub-canon.crw",
                "stubs/exiftool-stub-fujifilm.raf", "stubs/exiftool-stub-nikon.nef",
                "stubs/exiftool-stub-sigma-dp2.x3f", "unsupported/nikon-z9-he-jxl.dng"]
VERDICTS = {"ok", "damaged", "unsupported"}


def split_input(data: bytes) -> tuple[str, bytes]:
    if not data:
        return EXTENSIONS[0], b""
    return EXTENSIONS[data[0] % len(EXTENSIONS)], data[1:]


def check_one(data: bytes, workdir: str) -> dict:
    """Run one input through run_task and check the pipeline's contract; raise if broken."""
    from ingest.decode.task import run_task
    from ingest.kinds import classify

    ext, body = split_input(data)
    path = os.path.join(workdir, "input" + ext)
    preview = os.path.join(workdir, "preview.jpg")
    with open(path, "wb") as fh:
        fh.write(body)
    if os.path.exists(preview):
        os.unlink(preview)
    result = run_task({"path": path, "kind": str(classify(path)), "card_path": None,
                       "capture_time": None,
                       "preview": {"out": [preview], "size": 256, "quality": 80}})
    dec = result["decode"]
    if dec["verdict"] not in VERDICTS:
        raise AssertionError(f"verdict {dec['verdict']!r}")
    if dec["ok"] != (dec["verdict"] == "ok"):
        raise AssertionError(f"ok={dec['ok']} with verdict {dec['verdict']}")
    if dec["verdict"] != "ok" and not (isinstance(dec["error"], str) and dec["error"]):
        raise AssertionError(f"verdict {dec['verdict']} without an error text")
    json.dumps(result)
    for out in (result.get("preview") or {}).get("written") or []:
        from PIL import Image

        with Image.open(out) as im:
            im.verify()
    return result


def write_seeds(folder: Path) -> int:
    """Seed inputs: small real samples and generated files, each behind its extension byte."""
    folder.mkdir(parents=True, exist_ok=True)
    seeds: dict[str, tuple[str, bytes]] = {}
    if SAMPLES.is_dir():
        for rel in SEED_SAMPLES:
            p = SAMPLES / rel
            if p.is_file():
                seeds[rel] = (p.suffix.upper(), p.read_bytes())
    for name, (ext, data) in _generated().items():
        seeds[name] = (ext, data)
    for name, (ext, data) in seeds.items():
        index = EXTENSIONS.index(ext) if ext in EXTENSIONS else 0
        (folder / (name.replace("/", "_") + ".seed")).write_bytes(bytes([index]) + data)
    return len(seeds)


def _generated() -> dict[str, tuple[str, bytes]]:
    import io

    import numpy as np
    import pillow_heif
    import tifffile

    from fixtures.card import build_card

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        build_card(Path(tmp), seed=3, damaged=False)
        out["generated-card.DNG"] = (".DNG", (Path(tmp) / "DCIM/100NIKON/DSC_0002.DNG").read_bytes())
        out["generated-card.JPG"] = (".JPG", (Path(tmp) / "DCIM/100NIKON/DSC_0001.JPG").read_bytes())
    pixels = np.random.default_rng(5).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    tifffile.imwrite(buf, pixels, compression="zlib")
    out["generated-small.TIF"] = (".TIF", buf.getvalue())
    buf = io.BytesIO()
    pillow_heif.from_bytes("RGB", (64, 48), pixels.tobytes()).save(buf, quality=80)
    out["generated-small.HEIC"] = (".HEIC", buf.getvalue())
    return out


def recipe(finding: Path, sample: str) -> dict:
    """A tests/fuzz_corpus recipe that turns `sample` into the finding's file bytes: exact byte
    offsets (integers), applied in order, from the end of the file backwards."""
    _, target = split_input(finding.read_bytes())
    base = (SAMPLES / sample).read_bytes()
    ops = []
    matcher = difflib.SequenceMatcher(None, base, target, autojunk=False)
    for tag, i1, i2, j1, j2 in reversed(matcher.get_opcodes()):
        if tag == "replace":
            ops.append(["replace", i1, i2 - i1, target[j1:j2].hex()])
        elif tag == "delete":
            ops.append(["replace", i1, i2 - i1, ""])
        elif tag == "insert":
            ops.append(["insert", i1, target[j1:j2].hex()])
    return {"sample": sample, "ops": ops}


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT))
    if argv[1:2] == ["--seeds"]:
        print(f"{write_seeds(Path(argv[2]))} seed inputs written to {argv[2]}")
        return 0
    if argv[1:2] == ["--recipe"]:
        print(json.dumps(recipe(Path(argv[2]), argv[3])))
        return 0
    # The decode workers' own environment, which glibc reads at start-up: re-exec with it.
    from ingest.decode.pool import WORKER_ENV

    if any(k not in os.environ for k in WORKER_ENV):
        os.execve(sys.executable, [sys.executable, *argv], {**os.environ, **WORKER_ENV})
    workdir = tempfile.mkdtemp(prefix="ingest-atheris-")
    if argv[1:2] == ["--replay"]:
        for name in argv[2:]:
            result = check_one(Path(name).read_bytes(), workdir)
            print(name, result["decode"]["verdict"], (result["decode"]["error"] or "")[:200])
        return 0

    import atheris

    with atheris.instrument_imports():
        import ingest.decode.jpeg  # noqa: F401
        import ingest.decode.other  # noqa: F401
        import ingest.decode.raw  # noqa: F401
        import ingest.decode.task  # noqa: F401
        import ingest.preview  # noqa: F401

    def one_input(data: bytes) -> None:
        check_one(data, workdir)

    atheris.Setup(argv, one_input)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
