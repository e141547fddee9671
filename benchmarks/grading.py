"""How long grading one full, honest submission takes (the six exercise notebooks, sandboxed).

Grades a submission made of solutions/ once, with one job, and prints one JSON object:
``seconds`` (wall time of the whole grade() call), ``per_notebook`` (each notebook's share,
from a second call per notebook), the sandbox used and the machine's load average. Goal: <= 10 s
for the six notebooks on a quiet 2-core machine. A time, not a ratio: run it on a quiet machine
and read it with the load average beside it.

Usage: python benchmarks/grading.py [--sandbox auto|bwrap|none]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tinyir.grading import SOLUTIONS_DIR, grade  # noqa: E402
from tinyir.grading.sandbox import choose_sandbox  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sandbox", default="auto", choices=("auto", "bwrap", "none"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sub = Path(tmp) / "submissions" / "student"
        sub.mkdir(parents=True)
        for path in SOLUTIONS_DIR.glob("*.ipynb"):
            shutil.copy(path, sub / path.name)
        start = time.perf_counter()
        rows = grade(sub.parent, Path(tmp) / "grades.csv", jobs=1, progress=False,
                     sandbox=args.sandbox, force=True)
        seconds = time.perf_counter() - start
        points = sum(r.points for r in rows)
        maximum = sum(r.max_points for r in rows)
        per_notebook = {}
        for path in sorted(SOLUTIONS_DIR.glob("*.ipynb")):
            one = Path(tmp) / "one" / path.stem / "student"
            one.mkdir(parents=True)
            shutil.copy(path, one / path.name)
            start = time.perf_counter()
            grade(one.parent, Path(tmp) / f"{path.stem}.csv", jobs=1, progress=False,
                  sandbox=args.sandbox)
            per_notebook[path.name] = round(time.perf_counter() - start, 2)
    print(json.dumps({
        "grading": {"seconds": round(seconds, 2), "goal_seconds": 10, "points": points,
                    "max_points": maximum, "sandbox": choose_sandbox(args.sandbox).kind,
                    "per_notebook": per_notebook, "load_average": os.getloadavg()[0]},
    }, indent=2))


if __name__ == "__main__":
    main()
