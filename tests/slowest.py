"""The ten slowest tests of a `make test` run, from pytest's JUnit XML reports (tests and notebooks together).

    python tests/slowest.py runs/test-report/tests.xml runs/test-report/notebooks.xml [--top 10]
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET


def slowest(paths: list[str], top: int = 10) -> list[tuple[float, str]]:
    cases = []
    for path in paths:
        for case in ET.parse(path).getroot().iter("testcase"):
            cases.append((float(case.get("time") or 0.0), f"{case.get('classname')}::{case.get('name')}"))
    return sorted(cases, reverse=True)[:top]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("reports", nargs="+")
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args(argv)
    rows = slowest(args.reports, args.top)
    total = sum(float(c.get("time") or 0.0) for p in args.reports for c in ET.parse(p).getroot().iter("testcase"))
    sys.stdout.write(f"{args.top} slowest of make test (seconds; {total:.0f} s of test time in all):\n")
    for seconds, name in rows:
        sys.stdout.write(f"  {seconds:7.1f}  {name}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
