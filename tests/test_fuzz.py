"""Fuzz the per-file verifier `ingest.decode.task.run_task` with mutated real and generated files.

Mutations are truncation, bit flips, block fills (zeros or 0xFF) and insertions, at positions
given as fractions of the file so a recipe means the same on any copy of a sample. Every input
runs through a DecodePool worker with a short timeout, as in a real run, and must end with a
well-formed verdict: no unhandled exception, no result that cannot be written into a report.

Policy: a crash or a hang is a bug to find, not a verdict to accept. In a real run the pool
isolates a decoder that kills its worker or runs past the timeout (verdict "crashed" or
"timeout", and the run goes on; tests/test_decode_pool.py proves that), but here any fuzzed
input with verdict "crashed" or "timeout" fails its test, which prints the input's recipe.
Then either
- fix the cause in ingest/decode/ when it is our code (tests/fuzz_corpus/
  tiff-circular-ifd-chain.json is such a case: a TIFF page loop of ours that never ended), and
  keep the recipe in the corpus with the verdict it gets now; or
- when the crash or hang is inside a decoder library (LibRaw, libjpeg-turbo, libheif, a
  tifffile codec) and cannot be fixed here, keep the recipe in the corpus as a documented
  expectation: "expect" names that one verdict alone (["crashed"] or ["timeout"]), "decoder"
  names the decoder and version it was seen with (the result's decoder field, e.g.
  "rawpy 0.28.0 / LibRaw 0.22.2"), and "why" says what the library does with the input.
  The corpus replay then asserts that the input still crashes (or hangs), and fails once it
  no longer does, naming the decoder now in use, so a fixed library updates the expectation.
  The fuzz tests accept that exact input (same kind, same bytes, that verdict) and no other.
Today no corpus entry and no input of the fuzz tests at their default example counts crashes or
hangs a decoder (rawpy 0.28.0 / LibRaw 0.22.2, checked 2026-12-03), so the corpus holds no
crash expectation.

Deterministic for CI (`derandomize=True`, no example database): the same code and the same test
selection give the same inputs. (Hypothesis also mixes in constants it finds in the project's
own modules, so an edit elsewhere, or another selection of tests, changes some inputs.)
INGEST_FUZZ_EXAMPLES raises the number of examples for a longer local run;
fuzz/atheris_verifier.py is the coverage-guided one.

Inputs that once failed are kept in tests/fuzz_corpus/ as recipes (sample name + mutation ops
as JSON, never copies of ../shared/samples files) and replayed below as regression tests.
"""

from __future__ import annotations

import hashlib
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
from test_decode_pool import CrashingInput

from conftest import SAMPLES
from fixtures.damage import jpeg_scan_range
from ingest.decode.pool import DecodePool
from ingest.kinds import classify

CORPUS = Path(__file__).parent / "fuzz_corpus"
VERDICTS = {"ok", "damaged", "unsupported", "crashed", "timeout"}
FAULTS = {"crashed", "timeout"}  # the pool's verdicts for a decoder that died or hung
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


def _name(source: str) -> str:
    """The file name an input is written under (its extension picks the decoder)."""
    return source.rsplit("/", 1)[-1].split(":", 1)[-1]


def verify_input(pool: DecodePool, workdir: Path, source: str, data: bytes,
                 name: str | None = None) -> dict:
    """Run one input through a pool worker; return its result after checking the contract.
    The file's name (its extension picks the decoder) is the source's unless given."""
    name = name or _name(source)
    path = workdir / name
    path.write_bytes(data)
    return run_input(pool, workdir, path)


def run_input(pool: DecodePool, workdir: Path, path: Path) -> dict:
    """Run the file at `path` through a pool worker and check the result's contract."""
    name = path.name
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
    return f"verdict {verdict}: {result['decode']['error']}" if verdict in FAULTS else None


def fingerprint(name: str, data: bytes) -> str:
    """One input as the decoder sees it: its kind (from the name) and its bytes."""
    return f"{classify(name)}:{hashlib.sha256(data).hexdigest()}"


# --- the fuzz targets ------------------------------------------------------------------------

_SETTINGS = dict(derandomize=True, database=None, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture,
                                        HealthCheck.too_slow])


class Tally:
    """Counts the inputs a fuzz test ran and what became of them, for the reliability table.

    `known` maps the fingerprints of the corpus's documented crashes and hangs to their
    expectation; an input that matches one, with the verdict it names, is counted as known
    (its replay in the corpus checks it); every other crash or hang is kept to fail the test."""

    def __init__(self, known: dict[str, dict] | None = None):
        self.inputs = 0
        self.verdicts: dict[str, int] = {}
        self.kept: list[dict] = []
        self.known: list[str] = []
        self._expected = known or {}

    def add(self, source: str, ops: list, result: dict, name: str, data: bytes) -> None:
        self.inputs += 1
        dec = result["decode"]
        self.verdicts[dec["verdict"]] = self.verdicts.get(dec["verdict"], 0) + 1
        note = failure_note(result)
        if not note:
            return
        case = self._expected.get(fingerprint(name, data))
        if case and case["expect"] == [dec["verdict"]]:
            self.known.append(case["name"])
            return
        self.kept.append({"sample": source, "ops": ops, "why": note})

    def text(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(self.verdicts.items()))

    def check(self) -> None:
        """Fail on every crash or hang that is not a documented corpus expectation."""
        assert not self.kept, (
            f"{len(self.kept)} fuzzed input(s) crashed or hung a decoder; fix the cause in "
            "ingest/decode/, or document a decoder library's fault in tests/fuzz_corpus/ "
            "(see this module's docstring):\n" + "\n".join(json.dumps(k) for k in self.kept))


def _record(reliability, tally: Tally, what: str) -> None:
    known = f", documented in the corpus: {len(tally.known)}" if tally.known else ""
    reliability.row(
        area="fuzz", fault=f"mutated {what} through run_task (hypothesis, derandomized)",
        setup="truncation, bit flips, 0x00/0xFF block fills, insertions; DecodePool worker, "
              f"{TIMEOUT:g} s timeout, 256 px preview",
        expected="every input ends with a well-formed verdict; no exception; no decoder crash "
                 "or hang (verdict crashed/timeout) but those documented in the corpus",
        observed=f"{tally.inputs} inputs: {tally.text()}; undocumented crashes/hangs: "
                 f"{len(tally.kept)}{known}", lost=0, injected=0, fuzzed=tally.inputs)


def _fuzz(pool, workdir, cache: dict[str, bytes], examples: int, known: dict) -> Tally:
    """Hypothesis mutations of the cached inputs through run_task; every outcome tallied.
    A crash or hang does not stop the run: the test fails after it, naming all of them."""
    tally = Tally(known)

    @settings(max_examples=EXAMPLES or examples, **_SETTINGS)
    @given(source=st.sampled_from(list(cache)), ops=RECIPES)
    def one(source, ops):
        data = mutate(cache[source], ops)
        result = verify_input(pool, workdir, source, data)
        tally.add(source, ops, result, _name(source), data)

    one()
    for kept in tally.kept:
        print("worth keeping in tests/fuzz_corpus:", json.dumps(kept))
    return tally


def test_fuzz_real_samples(pool, workdir, built_card, known_faults, reliability):
    if not SAMPLES.is_dir():
        pytest.skip(f"real camera samples not found at {SAMPLES} (../shared/samples beside the "
                    "checkout); the generated inputs are fuzzed by test_fuzz_generated_files")
    sources = [s for s in REAL if (SAMPLES / s).is_file()]
    tally = _fuzz(pool, workdir, {s: load(s, None) for s in sources}, 120, known_faults)
    _record(reliability, tally, f"real samples ({len(sources)} files)")
    print("real samples:", tally.inputs, tally.text())
    tally.check()


def test_fuzz_generated_files(pool, workdir, built_card, known_faults, reliability):
    tally = _fuzz(pool, workdir, {s: load(s, built_card[0]) for s in GENERATED}, 80,
                  known_faults)
    _record(reliability, tally, "generated DNG, JPEG, TIFF and HEIF")
    print("generated:", tally.inputs, tally.text())
    tally.check()


def test_truncated_jpeg_never_passes(pool, workdir, built_card, reliability):
    """Strict libjpeg-turbo refuses every JPEG cut before its end-of-image marker."""
    data = load("generated:card.JPG", built_card[0])
    _, eoi = jpeg_scan_range(data)
    tally = Tally()

    @settings(max_examples=EXAMPLES or 12, **_SETTINGS)
    @given(keep=st.integers(0, eoi + 1))
    def one(keep):
        result = verify_input(pool, workdir, "generated:card.JPG", data[:keep])
        tally.add("generated:card.JPG", [["truncate", keep / len(data)]], result, "card.JPG",
                  data[:keep])
        assert result["decode"]["verdict"] == "damaged", (keep, result["decode"])

    one()
    reliability.row(area="fuzz", fault="JPEG cut anywhere before the end of its EOI marker",
                    setup="generated camera JPEG, cut at hypothesis-chosen offsets",
                    expected="verdict damaged every time", observed=f"{tally.inputs} cuts: "
                    f"{tally.text()}", lost=0, injected=0, fuzzed=tally.inputs)


def test_a_crash_or_hang_fails_the_fuzz_tests(tmp_path):
    """The fuzz tests' own check can fail: a real worker crash (a SIGSEGV sent to the worker
    while it reads the input, see tests/test_decode_pool.py) and a real hang (a read that
    never returns) are kept and fail Tally.check(); the same crash passes only as a
    documented corpus expectation of that input."""
    hang = tmp_path / "hang.NEF"
    os.mkfifo(hang)
    with DecodePool(1, timeout=2.0) as pool:
        with CrashingInput(tmp_path / "crash.NEF") as crasher:
            crashed = run_input(pool, tmp_path, crasher.path)
        hung = run_input(pool, tmp_path, hang)
    assert crasher.killed and crashed["decode"]["verdict"] == "crashed", crashed["decode"]
    assert hung["decode"]["verdict"] == "timeout", hung["decode"]

    tally = Tally()
    tally.add("crash.NEF", [], crashed, "crash.NEF", b"")
    tally.add("hang.NEF", [], hung, "hang.NEF", b"")
    assert [k["why"].split(":")[0] for k in tally.kept] == ["verdict crashed", "verdict timeout"]
    with pytest.raises(AssertionError, match="2 fuzzed input"):
        tally.check()

    known = {fingerprint("crash.NEF", b""): {"expect": ["crashed"], "name": "documented"}}
    tally = Tally(known)
    tally.add("crash.NEF", [], crashed, "crash.NEF", b"")
    assert tally.known == ["documented"] and not tally.kept
    tally.check()
    tally.add("crash.JPG", [], crashed, "crash.JPG", b"")  # another kind: another input
    tally.add("hang.NEF", [], hung, "hang.NEF", b"")  # a hang is not the crash documented
    assert len(tally.kept) == 2


# --- the corpus of inputs that once failed ---------------------------------------------------


def corpus() -> list[Path]:
    return sorted(CORPUS.glob("*.json"))


def read_case(recipe: Path) -> dict:
    """One corpus entry, checked against the policy in the module docstring."""
    case = json.loads(recipe.read_text())
    expect = case["expect"]
    assert expect and set(expect) <= VERDICTS, f"{recipe.name}: unknown verdicts in {expect}"
    assert case.get("why"), f"{recipe.name}: say why the input is kept"
    if FAULTS & set(expect):
        assert len(expect) == 1, (f"{recipe.name}: a crash or hang is expected alone, "
                                  f"not as one of {expect}")
        assert case.get("decoder"), (f"{recipe.name}: name the decoder and version the "
                                     f"{expect[0]} was seen with")
    return case


@pytest.fixture(scope="module")
def known_faults(built_card) -> dict[str, dict]:
    """The corpus's documented crashes and hangs: fingerprint -> the case (and its name)."""
    known = {}
    for recipe in corpus():
        case = read_case(recipe)
        if not FAULTS & set(case["expect"]):
            continue
        try:
            data = mutate(load(case["sample"], built_card[0]), case["ops"])
        except LookupError:
            continue
        known[fingerprint(case.get("file") or _name(case["sample"]), data)] = {
            **case, "name": recipe.stem}
    return known


@pytest.mark.parametrize("recipe", corpus(), ids=lambda p: p.stem)
def test_corpus_replays(pool, workdir, built_card, recipe, reliability):
    case = read_case(recipe)
    try:
        data = load(case["sample"], built_card[0])
    except LookupError as e:
        pytest.skip(f"{recipe.name}: {e}")
    result = verify_input(pool, workdir, case["sample"], mutate(data, case["ops"]),
                          case.get("file"))
    dec = result["decode"]
    verdict = dec["verdict"]
    fault = FAULTS & set(case["expect"])
    reliability.row(area="fuzz", fault=f"corpus {recipe.stem}: {case['why']}",
                    setup=f"{case.get('file') or case['sample']}: {case['sample']} + "
                          f"{json.dumps(case['ops'])[:100]}",
                    expected=(f"verdict {case['expect'][0]} (a fault of {case['decoder']}, "
                              "isolated by the pool)" if fault else
                              f"verdict in {sorted(case['expect'])}"),
                    observed=f"verdict {verdict}: {(dec['error'] or '')[:120]}",
                    lost=0, injected=0, fuzzed=1)
    if fault:
        assert verdict == case["expect"][0], (
            f"{recipe.name} no longer gets verdict {case['expect'][0]} (documented with "
            f"{case['decoder']}): with {dec['decoder']} it is {verdict}. If the library fixed "
            f"it, update the expectation and its note. {dec}")
    else:
        assert verdict in case["expect"], dec
