#!/usr/bin/env python3
"""Regenerates the reference fixtures under tests/fixtures/ from PyTorch.

Usage: python3 tools/gen_fixtures.py [module ...]
Each module in tools/fixtures/ (other than the helpers *common.py) defines FILE (the fixture's name under
tests/fixtures/) and cases(), returning the list of cases. Needs Debian's python3-torch; values
are computed in float64 and written with enough digits to round-trip float32.
"""
import importlib
import json
import os
import pkgutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
OUT = os.path.join(HERE, "..", "tests", "fixtures")


def main(argv):
    import fixtures  # noqa: F401  (the package in tools/fixtures)
    names = [m.name for m in pkgutil.iter_modules([os.path.join(HERE, "fixtures")])
             if not m.name.endswith("common")]
    if argv:
        names = [n for n in names if n in argv]
    os.makedirs(OUT, exist_ok=True)
    for name in sorted(names):
        mod = importlib.import_module("fixtures." + name)
        cases = mod.cases()
        path = os.path.join(OUT, mod.FILE)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(cases, f, separators=(",", ":"))
            f.write("\n")
        os.replace(tmp, path)
        print(f"{mod.FILE}: {len(cases)} cases")


if __name__ == "__main__":
    main(sys.argv[1:])
