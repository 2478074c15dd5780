"""What a re-run costs: `ingest offload` of a card whose every file is already archived.

Builds (or reuses) the samples card of e2e.py, offloads it once per ingest under test to two
destinations of its own on the same disk (`ingest offload CARD A B --no-previews`, untimed
but printed), then times, for --rounds interleaved rounds, with the page cache dropped before
every step (drop_caches as root, else posix_fadvise DONTNEED on every file involved):

  r       cat of every card file to /dev/null                   the floor of a re-run that
                                                                reads the card only
  rr      cat of every card file, then of both destinations'    the floor of a re-run that
          copies of them (the paths the first offload reported) proves every duplicate by a
                                                                re-read
  LABEL   ingest offload CARD A B --no-previews --json REPORT   the re-run; every file should
                                                                come out `duplicate`

`--ingest [LABEL=]PATH`, repeatable, picks what is timed: an `ingest` console script, a Python
interpreter (`python -m ingest`), or a source tree holding `ingest/` (run with its `.venv`'s
Python if it has one, else this one, with PYTHONPATH set to the tree). Each ingest re-runs
against the destinations it filled itself. The ingests take turns within each round, in the
reverse order every other round. Medians, every round, and the ratios re-run / r,
re-run / rr and each ingest / the first are printed.

Run: .venv/bin/python benchmarks/rerun.py [--ingest before=/tmp/ingest-before/.venv/bin/ingest]
     [--ingest after=.venv/bin/ingest] [--rounds 3] [--size 1G] [--card DIR]
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from card_from_samples import (  # noqa: E402 - sibling modules, importable when run as a script
    build_card,
    left_out_samples,
    parse_size,
)
from e2e import (  # noqa: E402
    NOISY_SHARE,
    PY,
    WARM_IMPORTS,
    Residency,
    Run,
    bash,
    card_files,
    evict,
    ingest_cmd,
    noisy,
    print_table,
    summarize,
    timed,
    wait_for_quiet,
)

HERE = Path(__file__).resolve()
FLOORS = {
    "r": "cat the card (floor: read the card once)",
    "rr": "cat the card, then both destinations' copies (floor: card + re-read of every twin)",
}


# -------------------------------------------------------------------------------------------
# The ingests under test.

@dataclass(slots=True)
class Ingest:
    label: str
    cmd: list[str]  # what `offload ...` is appended to
    # Its interpreter, with -P (Python 3.11+): `python -m` would otherwise put the current
    # folder first on sys.path, and from a checkout import that checkout's ingest instead of
    # PYTHONPATH's. With PYTHONPATH for a source tree.
    python: list[str]
    package: Path = Path()  # the ingest package it imports
    dests: list[Path] = field(default_factory=list)
    copies: list[str] = field(default_factory=list)  # the archived copies, from the fill
    fill: Run | None = None
    fill_statuses: dict = field(default_factory=dict)

    def run_python(self, code: str) -> str:
        # The current folder, as for the timed command: `-P` keeps it off sys.path, and the
        # package printed is then the one the offload imports.
        out = subprocess.run([*self.python, "-c", code], capture_output=True, text=True,
                             check=True)
        return out.stdout.strip()

    def fingerprint(self) -> str:
        """e2e.code_fingerprint() of the sources this ingest imports (run by its Python)."""
        return self.run_python(f"import sys; sys.path.insert(0, {str(HERE.parent)!r}); "
                               "from e2e import code_fingerprint; print(code_fingerprint())")

    def warm(self, log: Path) -> None:
        """As e2e's Bench.warm: byte-compile the package, load the tools' files."""
        with open(log, "ab") as out:
            for code in (f"import compileall; compileall.compile_dir({str(self.package)!r}, "
                         "quiet=1)", WARM_IMPORTS):
                subprocess.run([*self.python, "-c", code], stdout=out,
                               stderr=subprocess.STDOUT, check=False)


def resolve_ingest(spec: str) -> Ingest:
    label, sep, path = spec.partition("=")
    if not sep or "/" in label:
        label, path = "", spec
    p = Path(path).expanduser().absolute()
    if p.is_dir():
        if not (p / "ingest" / "__init__.py").exists():
            raise SystemExit(f"--ingest {spec}: {p} holds no ingest/ package")
        venv = p / ".venv" / "bin" / "python"
        python = ["env", f"PYTHONPATH={p}", str(venv if venv.exists() else PY), "-P"]
        cmd = [*python, "-m", "ingest"]
    elif p.is_file():
        with open(p, "rb") as f:
            first = f.readline().decode(errors="replace")
        if first.startswith("#!") and not p.name.startswith("python"):
            python, cmd = [shlex.split(first[2:])[0], "-P"], [str(p)]  # a console script
        else:
            python = [str(p), "-P"]
            cmd = [*python, "-m", "ingest"]
    else:
        raise SystemExit(f"--ingest {spec}: no such file or folder")
    ing = Ingest(label, cmd, python)
    try:
        ing.package = Path(ing.run_python(
            "import ingest, os; print(os.path.dirname(os.path.abspath(ingest.__file__)))"))
    except subprocess.CalledProcessError as e:
        raise SystemExit(f"--ingest {spec}: cannot import ingest: {e.stderr.strip()}") from None
    ing.label = ing.label or ing.package.parent.name
    return ing


# -------------------------------------------------------------------------------------------
# The runs.

class Session:
    def __init__(self, work: Path, card: Path, evict_method: str, quiet_cpus: float,
                 quiet_wait: float):
        self.work, self.card = work, card
        self.evict_method, self.quiet_cpus, self.quiet_wait = evict_method, quiet_cpus, quiet_wait
        self.log = work / "commands.log"
        self.card_files = sorted(card_files(card))
        self.residency = Residency()
        self.used_methods: set[str] = set()
        self.lists: dict[str, Path] = {}

    def file_list(self, name: str, paths: list[str]) -> Path:
        """A NUL-separated list for `xargs -0 -a LIST cat`."""
        path = self.work / f"{name}.list"
        path.write_bytes(b"".join(os.fsencode(p) + b"\0" for p in paths))
        return path

    def offload(self, ing: Ingest, report: Path) -> list[str]:
        return [*ing.cmd, "offload", str(self.card), *map(str, ing.dests), "--no-previews",
                "--json", str(report)]

    def run(self, label: str, cmd: list[str], files: list[str], ing: Ingest | None,
            report: Path | None) -> Run:
        """Quiet machine, cold files (`files`: what eviction must cover), warm tools; then the
        timed command, the residency before it and, for ingest, its report's statuses."""
        waited = wait_for_quiet(self.quiet_cpus, self.quiet_wait) if self.quiet_wait else 0.0
        code = ing.fingerprint() if ing else ""
        self.used_methods.add(evict(files, self.evict_method))
        if ing:
            ing.warm(self.log)
        else:
            subprocess.run(["cat", "--version"], stdout=subprocess.DEVNULL, check=True)
            subprocess.run(["xargs", "--version"], stdout=subprocess.DEVNULL, check=True)
        with open(self.log, "a") as f:
            f.write(f"\n### {label}: {shlex.join(cmd)}\n")
        resident = self.residency.fraction(files)
        run = timed(cmd, self.log)
        run.resident_before, run.code = resident, code
        if report is not None and report.exists():
            summary = json.loads(report.read_text())["summary"]
            run.statuses = {k: v["files"] for k, v in summary["by_status"].items()}
        print(f"  {label:<22} {run.seconds:7.2f} s  cpu {run.cpu_seconds:6.1f} s  others "
              f"{run.other_cpu_seconds or 0:5.1f} s  rss {run.peak_rss / 1e6:4.0f} MB  "
              f"rc {run.rc}  resident {100 * (resident or 0):4.1f} %  waited {waited:3.0f} s"
              f"{'  code ' + code if code else ''}{'  ' + str(run.statuses) if report else ''}",
              flush=True)
        return run

    def fill(self, ing: Ingest, everything: list[str]) -> None:
        """The first offload, into destinations of this ingest's own."""
        ing.dests = [self.work / ing.label / name for name in ("A", "B")]
        for d in ing.dests:
            d.mkdir(parents=True)
        report = self.work / ing.label / "fill.json"
        ing.fill = self.run(f"fill {ing.label}", self.offload(ing, report), everything, ing,
                            report)
        ing.fill_statuses = ing.fill.statuses
        if ing.fill.rc != 0 or not report.exists():
            raise SystemExit(f"the first offload with {ing.label} failed (rc {ing.fill.rc}); "
                             f"see {self.log}")
        files = json.loads(report.read_text())["files"]
        ing.copies = [os.path.join(c["destination"], c["path"])
                      for f in files for c in f["copies"] if c.get("verified")]


def rounds(session: Session, ingests: list[Ingest], n: int) -> dict[str, list[Run]]:
    card = session.card_files
    archives = [p for ing in ingests for p in ing.copies]
    everything = card + archives
    r_list = session.file_list("card", card)
    rr_list = session.file_list("card+copies", card + ingests[0].copies)
    cat = "xargs -0 -a {} cat > /dev/null"
    floors = {"r": bash(cat.format(shlex.quote(str(r_list)))),
              "rr": bash(cat.format(shlex.quote(str(rr_list))))}
    runs: dict[str, list[Run]] = {s: [] for s in [*floors, *(i.label for i in ingests)]}
    reports = session.work / "reports"
    reports.mkdir()
    for r in range(n):
        print(f"round {r + 1}/{n}", flush=True)
        turn = ingests if r % 2 == 0 else ingests[::-1]
        for step, cmd in floors.items():
            runs[step].append(session.run(f"r{r + 1}-{step}", cmd, everything, None, None))
        for ing in turn:
            report = reports / f"r{r + 1}-{ing.label}.json"
            runs[ing.label].append(session.run(f"r{r + 1}-{ing.label}",
                                               session.offload(ing, report), everything, ing,
                                               report))
    return runs


# -------------------------------------------------------------------------------------------
# Summaries.

def ratios(steps: dict, ingests: list[Ingest]) -> list[dict]:
    """Each re-run against each floor, and each ingest against the first: the ratio of the
    medians, and of each round (quiet: no step of the pair shared the machine)."""
    pairs = [(i.label, f) for i in ingests for f in FLOORS]
    pairs += [(i.label, ingests[0].label) for i in ingests[1:]]
    out = []
    for num, den in pairs:
        a, b = steps[num], steps[den]
        per_round = [{"ratio": x / y, "quiet": not (noisy(a, k) or noisy(b, k))}
                     for k, (x, y) in enumerate(zip(a["seconds"], b["seconds"], strict=True))]
        out.append({"ratio": f"{num} / {den}", "value": a["median_s"] / b["median_s"],
                    "extra_s": a["median_s"] - b["median_s"], "rounds": per_round})
    return out


def print_ratios(rows: list[dict]) -> None:
    print(f"\n{'ratio':<26} {'medians':>8} {'extra s':>8}  per round")
    for row in rows:
        rounds_txt = " ".join(f"{x['ratio']:.2f}{'' if x['quiet'] else '*'}"
                              for x in row["rounds"])
        print(f"{row['ratio']:<26} {row['value']:8.2f} {row['extra_s']:8.2f}  {rounds_txt}")
    if any(not x["quiet"] for row in rows for x in row["rounds"]):
        print(f"(* a round where other processes used more than {NOISY_SHARE:.0%} of the "
              "machine during one of the two steps)")


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Re-run benchmark (see benchmarks/README.md).")
    ap.add_argument("--ingest", action="append", default=[], metavar="[LABEL=]PATH",
                    help="an ingest to time (repeatable): console script, python interpreter "
                    "or source tree; default: the ingest beside this Python")
    ap.add_argument("--size", default="1G", help="card size (default 1G)")
    ap.add_argument("--card", type=Path, default=None,
                    help="card folder to build, or reuse when its manifest matches "
                    "(default: CARD_CACHE/card-SIZE, shared with e2e.py)")
    ap.add_argument("--card-cache", type=Path, default=Path("/tmp/ingest-bench-card"))
    ap.add_argument("--work", type=Path, default=None,
                    help="scratch folder for the destinations (default: a new one in $TMPDIR)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--evict", choices=("auto", "drop_caches", "fadvise"), default="auto")
    ap.add_argument("--quiet-cpus", type=float, default=0.3)
    ap.add_argument("--quiet-wait", type=float, default=60.0)
    ap.add_argument("--keep", action="store_true", help="keep the destinations afterwards")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    return ap.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    specs = args.ingest or [ingest_cmd()[0] if len(ingest_cmd()) == 1 else PY]
    ingests = [resolve_ingest(s) for s in specs]
    labels = [i.label for i in ingests]
    if len(set(labels)) != len(labels) or set(labels) & set(FLOORS):
        raise SystemExit(f"labels must be unique and not r or rr: {labels}; use LABEL=PATH")
    for ing in ingests:
        print(f"ingest {ing.label}: {shlex.join(ing.cmd)} (package {ing.package})")

    size = parse_size(args.size)
    card_dir = args.card or args.card_cache / f"card-{args.size.upper()}"
    left_out = left_out_samples()
    if left_out:
        print(f"samples without a replica recipe, left out of the card: {', '.join(left_out)}")
    print(f"card {card_dir}: building or reusing ({size / 1e9:g} GB)", flush=True)
    card = build_card(card_dir, size)
    print(f"card: {card.files} files ({card.raws} RAW, {card.jpegs} JPEG), "
          f"{card.bytes / 1e6:.0f} MB", flush=True)

    work_parent = args.work or Path(tempfile.gettempdir())
    work_parent.mkdir(parents=True, exist_ok=True)
    need = card.bytes * 2.2 * len(ingests)
    if shutil.disk_usage(work_parent).free < need:
        raise SystemExit(f"{work_parent} needs {need / 1e9:.1f} GB free for the destinations")
    work = Path(tempfile.mkdtemp(prefix="ingest-rerun-", dir=work_parent))
    session = Session(work, card.root, args.evict, args.quiet_cpus, args.quiet_wait)
    try:
        print("first offloads (untimed for the comparison)", flush=True)
        for ing in ingests:
            session.fill(ing, session.card_files + [p for i in ingests for p in i.copies])
        runs = rounds(session, ingests, args.rounds)
    finally:
        log_copy = Path(tempfile.gettempdir()) / "ingest-rerun-last-commands.log"
        if session.log.exists():
            shutil.copyfile(session.log, log_copy)
        if args.keep:
            print(f"destinations kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    steps = summarize(runs, card.bytes)
    for name, s in steps.items():
        s["what"] = FLOORS.get(name) or f"ingest offload CARD A B --no-previews ({name})"
    resident = [x for s in steps.values() for x in s["card_resident_before"] if x is not None]
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(),
               "python": platform.python_version()}
    print(f"\nmachine: {machine['platform']}, {machine['cpus']} CPUs, python "
          f"{machine['python']}; {args.rounds} rounds")
    print(f"card: {card.files} files, {card.bytes / 1e6:.0f} MB; page cache dropped with "
          f"{' + '.join(sorted(session.used_methods))} before every step; card and copies "
          f"resident before steps: max {max(resident) * 100 if resident else float('nan'):.1f} %")
    for ing in ingests:
        codes = set(steps[ing.label]["code"])
        statuses = sorted({json.dumps(x) for x in steps[ing.label]["statuses"]})
        print(f"{ing.label}: first offload {ing.fill.seconds:.1f} s {ing.fill_statuses}; "
              f"re-runs {' / '.join(statuses)}; sources {', '.join(sorted(codes))}"
              + ("  WARNING: changed during the run" if len(codes) > 1 else ""))
    print_table(steps, f"Medians of {args.rounds} interleaved rounds")
    rows = ratios(steps, ingests)
    print_ratios(rows)
    print(f"(command output: {log_copy})")
    if args.out:
        args.out.write_text(json.dumps({
            "machine": machine, "rounds": args.rounds, "left_out_samples": left_out,
            "card": {k: v for k, v in card.to_json().items() if k != "verified"},
            "ingests": [{"label": i.label, "cmd": i.cmd, "package": str(i.package),
                         "fill_seconds": i.fill.seconds, "fill_statuses": i.fill_statuses}
                        for i in ingests],
            "eviction": sorted(session.used_methods), "steps": steps, "ratios": rows,
        }, indent=1, default=str))
        print(f"results: {args.out}")
    bad = [s for s in labels if any(rc != 0 for rc in steps[s]["rc"])]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
