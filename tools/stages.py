"""Time the stages of a multi-command job (``make demo``) and print them at the end.

    python tools/stages.py run LOG NAME -- COMMAND [ARGS...]   run COMMAND, append "NAME<TAB>seconds" to LOG
    python tools/stages.py report LOG                          print every stage's time and the total

``run`` exits with the command's exit status (a failed stage is logged as failed, then the job
stops as it would have without timing).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path


def run(log: Path, name: str, command: list[str]) -> int:
    start = time.perf_counter()
    rc = subprocess.call(command)
    seconds = time.perf_counter() - start
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write(f"{name}\t{seconds:.1f}\t{'ok' if rc == 0 else f'failed ({rc})'}\n")
    return rc


def report(log: Path) -> int:
    if not log.is_file():
        print(f"no stage times in {log}", file=sys.stderr)
        return 1
    rows = [line.split("\t") for line in log.read_text().splitlines() if line.strip()]
    if not rows:
        print(f"no stage times in {log}", file=sys.stderr)
        return 1
    width = max(len(r[0]) for r in rows)
    total = 0.0
    print("stage times:")
    for name, seconds, status in rows:
        total += float(seconds)
        note = "" if status == "ok" else f"  {status}"
        print(f"  {name:<{width}}  {float(seconds) / 60:6.1f} min{note}")
    print(f"  {'total':<{width}}  {total / 60:6.1f} min")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("log", type=Path)
    r.add_argument("name")
    r.add_argument("command", nargs=argparse.REMAINDER)
    p = sub.add_parser("report")
    p.add_argument("log", type=Path)
    args = parser.parse_args(argv)
    if args.cmd == "report":
        return report(args.log)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("run needs a command after --")
    return run(args.log, args.name, command)


if __name__ == "__main__":
    sys.exit(main())
