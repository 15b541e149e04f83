"""Print the wall time of each stage run since a given moment (``make repro`` calls this)."""

from __future__ import annotations

import argparse
import json
import sys

from genduel.cli import TIMINGS_FILE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--since", type=float, default=0.0, help="unix time; older runs ignored")
    args = parser.parse_args(argv)
    rows = []
    if TIMINGS_FILE.exists():
        for line in TIMINGS_FILE.read_text().splitlines():
            entry = json.loads(line)
            if entry["time"] >= args.since:
                rows.append(entry)
    if not rows:
        sys.stdout.write("no stage ran (the pipeline was up to date)\n")
        return 0
    width = max(len(r["stage"]) for r in rows)
    lines = [f"{'stage':<{width}}  wall time"]
    lines += [f"{r['stage']:<{width}}  {r['seconds']:8.1f} s" for r in rows]
    lines.append(f"{'total':<{width}}  {sum(r['seconds'] for r in rows):8.1f} s")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
