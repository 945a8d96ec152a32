"""``make test-floors``: print the versions the lowest-versions job tests, and fail when a floor is not one of them.

uv's ``--resolution lowest-direct`` installs each direct dependency at the lowest version its declaration
allows *unless something else lifts it* (another dependency's own floor, a declaration elsewhere in our
extras). A lifted floor is a floor nobody tests: users may install it and it was never run. So, run with the
floors venv's Python after the install, this script reads the requirements both local distributions declare
(airflow-provider-qwenocr with the extras ``make`` installs, and qwenocr-emulator) from their installed
metadata, prints ``declared floor -> installed`` for each, and exits 1 naming every requirement whose
installed version is not its declared floor (or that declares no floor at all).

Extras the job does not install (``cluster``) are listed as untested rather than checked.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import platform
import sys

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

PROVIDER = "airflow-provider-qwenocr"
EMULATOR = "qwenocr-emulator"
LOCAL = {canonicalize_name(PROVIDER), canonicalize_name(EMULATOR)}


def floor_of(req: Requirement) -> Version | None:
    """The lowest version a requirement allows, from its ``>=``, ``==`` or ``~=`` clause (None: no floor)."""
    lows = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")]
    return max(lows) if lows else None


def applies(req: Requirement, extras: set[str]) -> bool:
    """Whether a requirement is installed with these extras (its marker holds for one of them, or for none)."""
    if req.marker is None:
        return True
    env = default_environment()
    return any(req.marker.evaluate({**env, "extra": e}) for e in (extras or {""}))


def untested_requirements(extras: set[str]) -> list[str]:
    """Requirements of provider extras this job does not install (``cluster``), unless installed via another."""
    reqs = [Requirement(r) for r in metadata.requires(PROVIDER) or []]
    covered = {(canonicalize_name(r.name), str(r.specifier)) for r in reqs if applies(r, extras)}
    out = []
    for r in reqs:
        key = (canonicalize_name(r.name), str(r.specifier))
        if key not in covered and key[0] not in LOCAL:
            covered.add(key)
            out.append(f"{r.name}{r.specifier} ({r.marker})")
    return out


def check(extras: set[str]) -> list[str]:
    """Print the table; return one problem line per requirement whose floor is not what is installed."""
    problems: list[str] = []
    rows: list[tuple[str, str, str, str]] = []
    for dist, dist_extras in ((PROVIDER, extras), (EMULATOR, set())):
        for line in metadata.requires(dist) or []:
            req = Requirement(line)
            if canonicalize_name(req.name) in LOCAL or not applies(req, dist_extras):
                continue
            floor = floor_of(req)
            try:
                have = Version(metadata.version(req.name))
            except metadata.PackageNotFoundError:
                have = None
            if floor is None or have != floor:
                problems.append(f"{dist}: {line.split(';')[0]} is tested at {have or 'nothing (not installed)'}")
                mark = "NOT THE FLOOR"
            else:
                mark = "ok"
            rows.append((dist, f"{req.name}{req.specifier}", str(have), mark))
    width = max(len(r[1]) for r in rows)
    for dist, spec, have, mark in sorted(rows, key=lambda r: (r[0], r[1].lower())):
        print(f"  {dist:<25} {spec:<{width}}  tested {have:<14} {mark}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extras", default="dev", help="the provider extras make installed, comma-separated (hatchling writes self-referenced extras out in full)")
    args = parser.parse_args()
    extras = {e.strip() for e in args.extras.split(",") if e.strip()}
    print(f"lowest-versions job: Python {platform.python_version()}, {PROVIDER}[{','.join(sorted(extras))}] + {EMULATOR}")
    problems = check(extras)
    untested = untested_requirements(extras)
    if untested:
        print(f"  declared but not installed by this job (untested): {'; '.join(untested)}")
    if problems:
        print("declared floors that this job does not test (raise each to the version tested, or find what lifts it):")
        for p in problems:
            print(f"  {p}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
