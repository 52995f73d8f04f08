"""Killed and survived mutants per module, from mutmut's results (run by ``tox -e mutation``).

Usage: ``python tools/mutation_report.py [--results FILE] [--equivalent docs/testing.md]``.
Without ``--results`` it asks ``python -m mutmut results --all true`` in the current directory.
With ``--equivalent``, survivors named in that file (as `` `module.x_name__mutmut_N` ``) count
as equivalent: the score is then killed / (mutants - equivalent survivors), and every survivor
the file does not name is listed, as a gap to close or to document.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

LINE = re.compile(r"^\s*(?P<name>[\w.]+?\.x[_\u01c1]\S*__mutmut_\d+): (?P<status>.+?)\s*$")
MODULE = re.compile(r"^(?P<module>[\w.]+?)\.x[_\u01c1]")
DOCUMENTED = re.compile(r"`([\w.]+?\.x[_\u01c1][^`]*__mutmut_\d+)`")
KILLED = {"killed", "timeout"}  # mutmut counts a timeout as a kill too
SURVIVED = {"survived", "no tests"}  # no test reached the mutant: it survives as well


def parse_results(text: str) -> dict[str, str]:
    """Mutant name -> status from the lines of ``mutmut results --all true``."""
    results = {}
    for line in text.splitlines():
        match = LINE.match(line)
        if match:
            results[match["name"]] = match["status"]
    return results


def module_of(name: str) -> str:
    match = MODULE.match(name)
    return match["module"] if match else name


def table(results: dict[str, str], equivalent: set[str]) -> list[list[str]]:
    """Rows of module | mutants | killed | survived | equivalent | other | score."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for name, status in results.items():
        row = counts[module_of(name)]
        row["mutants"] += 1
        if status in KILLED:
            row["killed"] += 1
        elif status in SURVIVED:
            row["survived"] += 1
            row["equivalent"] += name in equivalent
        else:  # not checked, skipped, suspicious, segfault, ...
            row["other"] += 1
    rows = []
    total: Counter[str] = Counter()
    for module in sorted(counts):
        total.update(counts[module])
        rows.append(_row(module, counts[module]))
    rows.append(_row("total", total))
    return rows


def _row(module: str, c: Counter[str]) -> list[str]:
    judged = c["killed"] + c["survived"] - c["equivalent"]
    score = f"{100 * c['killed'] / judged:.1f}%" if judged else "-"
    keys = ("mutants", "killed", "survived", "equivalent", "other")
    return [module, *(str(c[k]) for k in keys), score]


def render(rows: list[list[str]]) -> str:
    header = ["module", "mutants", "killed", "survived", "equivalent", "other", "score"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(header, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    for row in rows:
        lines.append(" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, help="saved `mutmut results --all true` output")
    parser.add_argument("--equivalent", type=Path, help="file naming the equivalent survivors")
    args = parser.parse_args(argv)
    if args.results is not None:
        text = args.results.read_text()
    else:
        text = subprocess.run(
            [sys.executable, "-m", "mutmut", "results", "--all", "true"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    results = parse_results(text)
    if not results:
        print("no mutmut results here: run `mutmut run` first", file=sys.stderr)
        return 1
    equivalent = set(DOCUMENTED.findall(args.equivalent.read_text())) if args.equivalent else set()
    print(render(table(results, equivalent)))
    undocumented = sorted(
        name for name, status in results.items() if status in SURVIVED and name not in equivalent
    )
    if args.equivalent is not None and undocumented:
        print(f"\nsurvivors not listed in {args.equivalent} ({len(undocumented)}):")
        for name in undocumented:
            print(f"  {name}: {results[name]}")
    stale = sorted(n for n in equivalent if results.get(n) not in SURVIVED)
    if stale:
        print(f"\nlisted as equivalent but not surviving now ({len(stale)}): {', '.join(stale)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
