"""scripts/check_floors.py, the guard of the lowest-versions job: what it calls a floor and what it flags.

Run against the venv the suite runs in: there the floors are usually *not* the installed versions (the
Airflow 3 venv has the newest of everything), so ``check`` must report them; in ``.venv-floors/`` it must
report none (``make test-floors`` runs it before the suite).
"""

from __future__ import annotations

import importlib.util
import pathlib

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

_PATH = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "check_floors.py"
_spec = importlib.util.spec_from_file_location("check_floors", _PATH)
check_floors = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_floors)


@pytest.mark.parametrize(
    ("line", "floor"),
    [
        ("apache-airflow>=2.10,<4", "2.10"),
        ("pyrate-limiter<5,>=4.5", "4.5"),
        ("celery==5.5.1", "5.5.1"),
        ("foo~=1.4.2", "1.4.2"),
        ("bar<3", None),
        ("baz", None),
    ],
)
def test_floor_is_the_lowest_version_allowed(line, floor):
    assert check_floors.floor_of(Requirement(line)) == (Version(floor) if floor else None)


def test_a_requirement_applies_only_with_its_extra():
    req = Requirement("redis>=4.5; extra == 'shared-limiter'")
    assert check_floors.applies(req, {"shared-limiter"})
    assert not check_floors.applies(req, {"dev"})
    assert check_floors.applies(Requirement("openai>=1.40"), set())


def test_check_prints_every_floor_and_flags_a_version_above_it(capsys):
    """Airflow is the one floor that is known per venv: 2.10.0 in .venv-floors/, 3.x or 2.10.5 elsewhere."""
    from importlib import metadata

    problems = check_floors.check({"dev"})
    printed = capsys.readouterr().out
    assert "apache-airflow<4,>=2.10" in printed and "pillow>=10.1" in printed and "rapidocr<4,>=3.10" in printed
    airflow_lifted = any(p.startswith("airflow-provider-qwenocr: apache-airflow<4,>=2.10 ") for p in problems)
    assert airflow_lifted is (Version(metadata.version("apache-airflow")) != Version("2.10"))
