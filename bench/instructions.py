"""Instructions per ingest line, counted by callgrind: a figure other jobs on the machine do not
move, for comparing two trees of the ingest path (docs/performance.md, "Ingest path, cheaper
per event").

    python -m bench.instructions [--kinds standard,opencanary,cowrie] [--stages parse,node]
                                 [--lines 1000]

For each kind of line and stage, the program below runs under ``valgrind --tool=callgrind``
twice, over ``--lines`` and over twice as many lines (always making twice as many, so making
them cancels out), and prints the difference per line. Stages: ``parse`` is
``ingest.parse_line``; ``node`` is ``parse_line`` then ``Node.publish`` with the broker's
publish stubbed (normalize again, serialize, count, route, prepare). Needs valgrind (Debian's
``valgrind`` package); a run takes minutes, since callgrind is some 50 times slower.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

PROGRAM = """
import sys
from bench.ingest import PARSED
from netsentinel_websocket.config import validate
from netsentinel_websocket.ingest import parse_line
from netsentinel_websocket.node import Node

kind, stage, count, made = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
config = {"websocket.enabled": True, "websocket.auth.jwt.secret": "x" * 40}
node = Node(validate(config).websocket)
node.broker.publish = lambda channel, prepared: None
lines = [PARSED[kind](n) for n in range(made)]
for n in range(made, made + 50):  # the first use of every path, on lines not measured
    node.publish(parse_line(PARSED[kind](n)))
if stage == "parse":
    for line in lines[:count]:
        parse_line(line)
else:
    for line in lines[:count]:
        node.publish(parse_line(line))
"""


def instructions(kind: str, stage: str, count: int, made: int) -> int:
    """Instructions callgrind counted for the whole program over ``count`` lines."""
    run = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-c",
            PROGRAM,
            kind,
            stage,
            str(count),
            str(made),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", run.stderr)
    if found is None:
        raise RuntimeError(f"no count from callgrind: {run.stderr[-500:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", default="standard,opencanary,cowrie")
    parser.add_argument("--stages", default="parse,node")
    parser.add_argument("--lines", type=int, default=1000)
    args = parser.parse_args()
    for kind in args.kinds.split(","):
        for stage in args.stages.split(","):
            base = instructions(kind, stage, args.lines, 2 * args.lines)
            double = instructions(kind, stage, 2 * args.lines, 2 * args.lines)
            per_line = (double - base) // args.lines
            print(f"{kind} {stage}: {per_line:,} instructions/line", flush=True)


if __name__ == "__main__":
    main()
