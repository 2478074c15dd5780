"""Fuzz the per-file verifier `ingest.decode.task.run_task` with mutated real and generated files.

Mutations are truncation, bit flips, block fills (zeros or 0xFF) and insertions, at positions
given as fractions of the file so a recipe means the same on any copy of a sample. Every input
runs through a DecodePool worker with a short timeout, as in a real run, and must end with a
well-formed verdict: no unhandled exception, no result that cannot be written into a report,
no hang past the timeout (a hang or a crash is itself a verdict, isolated by the pool).

Deterministic for CI (`derandomize=True`, no example database): the same code and the same test
selection give the same inputs. (Hypothesis also mixes in constants it finds in the project's
own modules, so an edit elsewhere, or another selection of tests, changes some inputs.)
INGEST_FUZZ_EXAMPLES raises the number of examples for a longer local run;
fuzz/atheris_verifier.py is the coverage-guided one.

Inputs that once failed are kept in tests/fuzz_corpus/ as recipes (sample name + mutation ops
as JSON, never copies of ../shared/samples files) and replayed below as regression tests.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from reliability_table import reliability_fixture  # noqa: F401

from conftest import SAMPLES
from fixtures.damage import jpeg_scan_range
from ingest.decode.pool import DecodePool
from ingest.kinds import classify

CORPUS = Path(__file__).parent / "fuzz_corpus"
VERDICTS = {"ok", "damaged", "unsupported", "crashed", "timeout"}
TIMEOUT = 20.0  # per input; a real run uses 120 s
EXAMPLES = int(os.environ.get("INGEST_FUZZ_EXAMPLES", "0")) or None
# Small real samples (the decoders' variety, not their size): RAW containers LibRaw parses in
# very different ways, two real camera JPEGs, a metadata-only DNG and an unsupported DNG.
REAL = ["raw/kodak-dc50.KDC", "raw/apple-quicktake150.QTK", "raw/apple-quicktake100.QTK",
        "jpeg/nikon-e950.jpg", "jpeg/apple-quicktake200.JPG", "stubs/exiftool-stub.dng",
        "stubs/exiftool-stub-panasonic.rw2", "stubs/exiftool-stub-canon.cr3",
        "unsupported/nikon-z9-he-jxl.dng", "stubs/exiftool-stub-fujifilm.raf"]
GENERATED = ["generated:card.DNG", "generated:card.JPG", "generated:small.TIF",
             "generated:small.HEIC"]


# --- inputs ----------------------------------------------------------------------------------


def _generated(name: str, card_root: Path) -> bytes:
    if name == "card.DNG":  # a DNG from the sample card: CFA data and an embedded preview
        return (card_root / "DCIM/100NIKON/DSC_0002.DNG").read_bytes()
    if name == "card.JPG":
        return (card_root / "DCIM/100NIKON/DSC_0001.JPG").read_bytes()
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    if name == "small.TIF":
        import tifffile

        tifffile.imwrite(buf, pixels, compression="zlib")
    else:
        import pillow_heif

        pillow_heif.from_bytes("RGB", (64, 48), pixels.tobytes()).save(buf, quality=80)
    return buf.getvalue()


def load(source: str, card_root: Path | None) -> bytes:
    if source == "generated:empty":  # a corpus input spelled out whole by its ops
        return b""
    if source.startswith("generated:"):
        if card_root is None:
            raise LookupError("generated inputs need the sample card")
        return _generated(source.split(":", 1)[1], card_root)
    path = SAMPLES / source
    if not path.is_file():
        raise LookupError(f"sample {path} not found")
    return path.read_bytes()


def mutate(data: bytes, ops: list[list]) -> bytes:
    """Apply a recipe in order. A position is a fraction of the current length (float) or an
    exact byte offset (int, as fuzz/atheris_verifier.py --recipe writes them)."""
    out = bytearray(data)
    for op in ops:
        kind, at = op[0], op[1]
        cut = min(at, len(out)) if isinstance(at, int) else int(at * len(out))
        pos = min(cut, max(len(out) - 1, 0))
        if kind == "truncate":
            del out[cut:]
        elif kind in ("flip", "fill") and not out:
            continue  # nothing left to damage
        elif kind == "flip":
            out[pos] ^= 1 << op[2]
        elif kind == "fill":
            end = min(len(out), pos + op[2])
            out[pos:end] = bytes([op[3]]) * (end - pos)
        elif kind == "insert":
            out[cut:cut] = bytes.fromhex(op[2])
        elif kind == "replace":
            out[cut:cut + op[2]] = bytes.fromhex(op[3])
        else:
            raise ValueError(f"unknown mutation {op!r}")
    return bytes(out)


OPS = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0.0, 1.0)),
    st.tuples(st.just("flip"), st.floats(0.0, 1.0), st.integers(0, 7)),
    st.tuples(st.just("fill"), st.floats(0.0, 1.0), st.integers(1, 65536),
              st.sampled_from([0x00, 0xFF])),
    st.tuples(st.just("insert"), st.floats(0.0, 1.0),
              st.binary(min_size=1, max_size=64).map(bytes.hex)),
).map(list)
RECIPES = st.lists(OPS, min_size=1, max_size=4)


# --- running one input -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool():
    with DecodePool(1, timeout=TIMEOUT) as p:
        yield p


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def verify_input(pool: DecodePool, workdir: Path, source: str, data: bytes,
                 name: str | None = None) -> dict:
    """Run one input through a pool worker; return its result after checking the contract.
    The file's name (its extension picks the decoder) is the source's unless given."""
    name = name or source.rsplit("/", 1)[-1].split(":", 1)[-1]
    path = workdir / name
    path.write_bytes(data)
    preview = workdir / "preview" / (name + ".jpg")
    if preview.exists():
        preview.unlink()
    req = {"path": str(path), "kind": str(classify(name)), "card_path": None,
           "capture_time": None, "preview": {"out": [str(preview)], "size": 256, "quality": 80}}
    pool.submit(0, req)
    (key, result), = pool.drain()
    dec = result["decode"]
    assert dec["verdict"] in VERDICTS, dec
    assert dec["ok"] == (dec["verdict"] == "ok"), dec
    if dec["verdict"] != "ok":
        assert isinstance(dec["error"], str) and dec["error"], dec
    json.dumps(result)  # the report can carry it
    written = (result.get("preview") or {}).get("written") or []
    for out in written:
        with Image.open(out) as im:  # a preview that is claimed is a real JPEG
            im.verify()
    return result


def failure_note(result: dict) -> str | None:
    """What would make an input worth keeping: a worker crash or a timeout."""
    verdict = result["decode"]["verdict"]
    return f"verdict {verdict}: {result['decode']['error']}" if verdict in ("crashed",
                                                                         "timeout") else None


# --- the fuzz targets ------------------------------------------------------------------------

_SETTINGS = dict(derandomize=True, database=None, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture,
                                        HealthCheck.too_slow])


class Tally:
    """Counts the inputs a fuzz test ran and what became of them, for the reliability table."""

    def __init__(self):
        self.inputs = 0
        self.verdicts: dict[str, int] = {}
        self.kept: list[dict] = []

    def add(self, source: str, ops: list, result: dict) -> None:
        self.inputs += 1
        v = result["decode"]["verdict"]
        self.verdicts[v] = self.verdicts.get(v, 0) + 1
        note = failure_note(result)
        if note:
            self.kept.append({"sample": source, "ops": ops, "why": note})

    def text(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(self.verdicts.items()))


def _record(reliability, tally: Tally, what: str) -> None:
    reliability.row(
        area="fuzz", fault=f"mutated {what} through run_task (hypothesis, derandomized)",
        setup="truncation, bit flips, 0x00/0xFF block fills, insertions; DecodePool worker, "
              f"{TIMEOUT:g} s timeout, 256 px preview",
        expected="every input ends with a well-formed verdict; no exception, no hang",
        observed=f"{tally.inputs} inputs: {tally.text()}; worker crashes/timeouts kept: "
                 f"{len(tally.kept)}", lost=0, injected=0, fuzzed=tally.inputs)


def _fuzz(pool, workdir, cache: dict[str, bytes], examples: int) -> Tally:
    """Hypothesis mutations of the cached inputs through run_task; every outcome tallied."""
    tally = Tally()

    @settings(max_examples=EXAMPLES or examples, **_SETTINGS)
    @given(source=st.sampled_from(list(cache)), ops=RECIPES)
    def one(source, ops):
        result = verify_input(pool, workdir, source, mutate(cache[source], ops))
        tally.add(source, ops, result)

    one()
    for kept in tally.kept:
        print("worth keeping in tests/fuzz_corpus:", json.dumps(kept))
    return tally


def test_fuzz_real_samples(pool, workdir, built_card, reliability):
    if not SAMPLES.is_dir():
        pytest.skip(f"real camera samples not found at {SAMPLES} (../shared/samples beside the "
                    "checkout); the generated inputs are fuzzed by test_fuzz_generated_files")
    sources = [s for s in REAL if (SAMPLES / s).is_file()]
    tally = _fuzz(pool, workdir, {s: load(s, None) for s in sources}, 120)
    _record(reliability, tally, f"real samples ({len(sources)} files)")
    print("real samples:", tally.inputs, tally.text())


def test_fuzz_generated_files(pool, workdir, built_card, reliability):
    tally = _fuzz(pool, workdir, {s: load(s, built_card[0]) for s in GENERATED}, 80)
    _record(reliability, tally, "generated DNG, JPEG, TIFF and HEIF")
    print("generated:", tally.inputs, tally.text())


def test_truncated_jpeg_never_passes(pool, workdir, built_card, reliability):
    """Strict libjpeg-turbo refuses every JPEG cut before its end-of-image marker."""
    data = load("generated:card.JPG", built_card[0])
    _, eoi = jpeg_scan_range(data)
    tally = Tally()

    @settings(max_examples=EXAMPLES or 12, **_SETTINGS)
    @given(keep=st.integers(0, eoi + 1))
    def one(keep):
        result = verify_input(pool, workdir, "generated:card.JPG", data[:keep])
        tally.add("generated:card.JPG", [["truncate", keep / len(data)]], result)
        assert result["decode"]["verdict"] == "damaged", (keep, result["decode"])

    one()
    reliability.row(area="fuzz", fault="JPEG cut anywhere before the end of its EOI marker",
                    setup="generated camera JPEG, cut at hypothesis-chosen offsets",
                    expected="verdict damaged every time", observed=f"{tally.inputs} cuts: "
                    f"{tally.text()}", lost=0, injected=0, fuzzed=tally.inputs)


# --- the corpus of inputs that once failed ---------------------------------------------------


def corpus() -> list[Path]:
    return sorted(CORPUS.glob("*.json"))


@pytest.mark.parametrize("recipe", corpus(), ids=lambda p: p.stem)
def test_corpus_replays(pool, workdir, built_card, recipe, reliability):
    case = json.loads(recipe.read_text())
    try:
        data = load(case["sample"], built_card[0])
    except LookupError as e:
        pytest.skip(f"{recipe.name}: {e}")
    result = verify_input(pool, workdir, case["sample"], mutate(data, case["ops"]),
                          case.get("file"))
    verdict = result["decode"]["verdict"]
    reliability.row(area="fuzz", fault=f"corpus {recipe.stem}: {case['why']}",
                    setup=f"{case.get('file') or case['sample']}: {case['sample']} + "
                          f"{json.dumps(case['ops'])[:100]}",
                    expected=f"verdict in {sorted(case['expect'])}",
                    observed=f"verdict {verdict}: {(result['decode']['error'] or '')[:120]}",
                    lost=0, injected=0, fuzzed=1)
    assert verdict in case["expect"], result["decode"]
