"""Where a step's time goes: py-spy profiles of e2e.py's steps, by process, thread and function.

Runs each step asked for (default b, d1 and e) once, on the same card and with the page cache
dropped first, exactly as e2e.py runs it, but under `py-spy record --subprocesses`. For each
step it prints:

  - the wall time, and the CPU seconds (user and system) of the main process, of the decode
    workers and of the rest of the tree, sampled from /proc like e2e.py does, and the steal;
  - py-spy's samples per process and per thread of the main process;
  - the functions under which the most samples fell, inclusive (ingest's own functions, and
    the benchmark helper's for b) and as leaves, for the main process and for the workers.

py-spy counts a sample for every thread it does not judge idle, and its judgement is a
heuristic: threads waiting for the disk count, and so, often, do threads waiting on a lock, a
queue or a select. Its seconds are wall time of threads, not CPU seconds; the CPU line is.
Leaves are counted per line, inclusive samples per function; the frames above nearly all of a
role's main-thread samples (cli > api > pipeline) are printed once, as its call chain. The raw
stacks stay in --out (one file per step, collapsed format: flamegraph.pl and speedscope read
it).

Needs py-spy: `.venv/bin/pip install -e '.[profile]'`. Run as root to drop the page cache
(see e2e.py). py-spy reads the processes without stopping them (`--nonblocking`); `--native`
adds the C frames (LibRaw's) but stops every process at each sample, and py-spy then takes
several CPU seconds of its own.

Run: .venv/bin/python benchmarks/profile_steps.py [--steps b,d1,e] [--rate 50] [--native]
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import e2e  # noqa: E402 - the sibling script: same card, same commands, same eviction

TOP = 12
CHAIN_SHARE = 0.9


@dataclass
class Tree:
    """CPU seconds per process of a step's tree, by role, as last sampled."""

    cpu: dict[int, tuple[str, float, float]] = field(default_factory=dict)

    def by_role(self) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for role, user, system in self.cpu.values():
            u, s, n = out.get(role, [0.0, 0.0, 0])
            out[role] = [u + user, s + system, n + 1]
        return out


def role_of(pid: int, root_pid: int) -> str | None:
    """py-spy (the root), main (its child, the step's command), decode workers or other;
    None when the process is gone before it could be asked."""
    import psutil

    if pid == root_pid:
        return "py-spy"
    try:
        proc = psutil.Process(pid)
        if proc.ppid() == root_pid:
            return "main"
        return "decode workers" if _is_worker(" ".join(proc.cmdline())) else "other"
    except psutil.Error:
        return None


def _is_worker(cmdline: str) -> bool:
    """A decode worker's command line (loky's, or multiprocessing's); not loky's tracker."""
    return "popen_loky_posix" in cmdline or "spawn_main" in cmdline


def run_profiled(cmd: list[str], raw: Path, rate: int, native: bool, log: Path) -> tuple:
    """Run cmd under py-spy; returns (wall seconds, exit code, Tree, steal seconds)."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy is not installed: .venv/bin/pip install -e '.[profile]'")
    args = [spy, "record", "--subprocesses", "--threads", "--rate", str(rate), "--format", "raw",
            "--output", str(raw)]
    args += ["--native"] if native else ["--nonblocking"]
    times: dict[int, tuple[float, float]] = {}
    roles: dict[int, str] = {}

    def sample(root) -> None:
        e2e.sample_tree(root, times)
        for pid in times.keys() - roles.keys():
            # Kept once known: an exiting worker's cmdline is empty. "other" is asked again,
            # in case the process had not yet exec'd its own command.
            role = role_of(pid, root.pid)
            if role not in (None, "other"):
                roles[pid] = role

    ticks0 = e2e.cpu_ticks()
    seconds, rc = e2e.run_sampled([*args, "--", *cmd], log, sample)
    spent = e2e.tick_seconds(ticks0, e2e.cpu_ticks())
    tree = Tree({pid: (roles.get(pid, "other"), user, system)
                 for pid, (user, system) in times.items()})
    return seconds, rc, tree, spent[1] if spent else None


@dataclass
class Profile:
    """py-spy's collapsed stacks, split by process role and main-process thread."""

    rate: int
    samples: collections.Counter = field(default_factory=collections.Counter)
    threads: collections.Counter = field(default_factory=collections.Counter)
    inclusive: dict[str, collections.Counter] = field(default_factory=dict)
    leaves: dict[str, collections.Counter] = field(default_factory=dict)
    # Per role, the same counts over its processes' main threads only: their call chain.
    main_thread: collections.Counter = field(default_factory=collections.Counter)
    main_thread_inclusive: dict[str, collections.Counter] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path, rate: int, own: tuple[str, ...]) -> Profile:
        prof = cls(rate)
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            frames = stack.split(";")
            procs = [f for f in frames if f.startswith("process ")]
            role = "main" if len(procs) == 1 else (
                "decode workers" if _is_worker(procs[-1]) else "other")
            rest = [f for f in frames if not f.startswith("process ")]
            head = rest[0] if rest and rest[0].startswith("thread (") else None
            thread = head.split(": ", 1)[1] if head and ": " in head else ""
            calls = rest[1:] if head else rest
            prof.samples[role] += n
            name = _thread_name(thread, calls)
            if role == "main":
                prof.threads[name] += n
            if calls:
                prof.leaves.setdefault(role, collections.Counter())[calls[-1]] += n
            # Ordered from the outermost frame in, so that ties keep callers before callees.
            mine = dict.fromkeys(_no_line(c) for c in calls if any(o in c for o in own))
            inc = prof.inclusive.setdefault(role, collections.Counter())
            for c in mine:
                inc[c] += n
            if name == "MainThread":
                prof.main_thread[role] += n
                chain = prof.main_thread_inclusive.setdefault(role, collections.Counter())
                for c in mine:
                    chain[c] += n
        return prof

    def chain(self, role: str) -> list[str]:
        """The frames above nearly all of the role's main-thread samples (cli > api >
        pipeline): they say how the work was reached, not where its time went. The deepest
        is kept out of the chain when nothing else would be left to list."""
        counts = self.main_thread_inclusive.get(role, collections.Counter())
        chain = [fn for fn, n in counts.most_common()
                 if n >= CHAIN_SHARE * self.main_thread[role]]
        if chain and len(chain) == len(self.inclusive.get(role, ())):
            chain.pop()
        return chain

    def seconds(self, n: int) -> float:
        return n / self.rate


def _short(frame: str) -> str:
    """'offload (ingest/api.py)' -> 'offload (api.py)'."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rstrip(')').rsplit('/', 1)[-1]})" if where else name


def _no_line(frame: str) -> str:
    """'f (path:12)' -> 'f (path)': a function counts once however many of its lines ran."""
    head, sep, tail = frame.rpartition(":")
    return f"{head})" if sep and tail.rstrip(")").isdigit() else frame


def _thread_name(name: str, calls: list[str]) -> str:
    """py-spy names a thread only when Python knows it; else name it by what it runs."""
    if name and not name.startswith("Thread-"):
        return name
    if calls and calls[0].startswith("<module> "):
        return "MainThread"  # sampled before py-spy could read its name: only it runs <module>
    for c in calls:
        if "_bootstrap" not in c and "Thread.run" not in c:
            return c.split(" (")[0]
    return "(no Python frames)"


def report(step: str, seconds: float, rc: int, tree: Tree, steal: float | None,
           prof: Profile) -> None:
    print(f"\n=== {step}: {e2e.DESCRIPTIONS[step]}  (wall {seconds:.2f} s, exit {rc})")
    parts = []
    for role, (u, s, n) in sorted(tree.by_role().items()):
        procs = f", {n} processes" if n > 1 else ""
        parts.append(f"{role} {u + s:.2f} (user {u:.2f}, sys {s:.2f}{procs})")
    print("CPU s: " + "; ".join(parts) + (f"; steal {steal:.2f}" if steal is not None else ""))
    total = sum(prof.samples.values())
    print(f"py-spy samples: {prof.seconds(total):.2f} s in all: " + ", ".join(
        f"{r} {prof.seconds(n):.2f}" for r, n in prof.samples.most_common()))
    if prof.threads:
        print("  main process by thread: " + ", ".join(
            f"{t} {prof.seconds(n):.2f}" for t, n in prof.threads.most_common(8)))
    for role in ("main", "decode workers"):
        if role not in prof.samples:
            continue
        inclusive = prof.inclusive.get(role, collections.Counter())
        chain = prof.chain(role)
        if chain:
            print(f"  {role}, main thread's call chain ({prof.seconds(inclusive[chain[-1]]):.2f} s): "
                  + " > ".join(_short(fn) for fn in chain))
        print(f"  {role}, inclusive (s)" + (", chain left out:" if chain else ":"))
        for fn, n in [(f, n) for f, n in inclusive.most_common() if f not in chain][:TOP]:
            print(f"    {prof.seconds(n):6.2f}  {fn}")
        print(f"  {role}, leaf (s):")
        for fn, n in prof.leaves.get(role, collections.Counter()).most_common(TOP):
            print(f"    {prof.seconds(n):6.2f}  {fn}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="py-spy profiles of e2e.py's steps.")
    ap.add_argument("--steps", default="b,d1,e", help="e2e.py's steps, comma-separated (not a, "
                    "c or cj: their copy is cp, which py-spy cannot see)")
    ap.add_argument("--size", default="1G")
    ap.add_argument("--card", type=Path, default=None)
    ap.add_argument("--card-cache", type=Path, default=Path("/tmp/ingest-bench-card"))
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--rate", type=int, default=50, help="samples per second (default 50; "
                    "py-spy's own CPU time, printed per step, grows with it)")
    ap.add_argument("--native", action="store_true", help="include C frames (slower)")
    ap.add_argument("--evict", choices=("auto", "drop_caches", "fadvise"), default="auto")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "ingest-profile")
    return ap.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    steps = [s for s in args.steps.split(",") if s]
    bad = [s for s in steps if s not in e2e.STEPS or s in ("a", "c", "cj")]
    if bad:
        raise SystemExit(f"cannot profile step(s) {', '.join(bad)}: choose from b, d1, d2, p, e")
    card_dir = args.card or args.card_cache / f"card-{args.size.upper()}"
    card = e2e.build_card(card_dir, e2e.parse_size(args.size))
    files = e2e.card_files(card_dir)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ingest-profile-"))
    bench = e2e.Bench(work, args.evict, quiet_wait=0.0, verbose=False)
    own = ("ingest/", "e2e.py", "decode_one (")  # b's workers run decode_one unpickled
    try:
        for step in steps:
            scratch, cmd, _report, _waited = bench.prepare(step, card_dir, files, args.jobs, step)
            raw = args.out / f"{step}.txt"
            seconds, rc, tree, steal = run_profiled(cmd, raw, args.rate, args.native, bench.log)
            report(step, seconds, rc, tree, steal, Profile.read(raw, args.rate, own))
            shutil.rmtree(scratch, ignore_errors=True)
    finally:
        if bench.log.exists():
            shutil.copyfile(bench.log, args.out / "commands.log")
        shutil.rmtree(work, ignore_errors=True)
    print(f"\ncard: {card.files} files, {card.bytes / 1e6:.0f} MB; raw stacks in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
