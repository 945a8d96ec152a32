"""The README's install-from-a-clone block, as scripts/check_install.py extracts it (the check itself builds
both wheels and installs them in a fresh venv: ``make check-install``, run by .ci/run). Here: the block is
found, builds with ``make dist`` and installs from ``dist/`` with the emulator extra; the Makefile has the
``dist`` target; and the extractor refuses a README that lost those lines."""

from __future__ import annotations

import importlib
import os
import re
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "scripts"))

check_install = importlib.import_module("check_install")


def _read(name: str) -> str:
    with open(os.path.join(REPO, name), encoding="utf-8") as fh:
        return fh.read()


def test_the_readme_block_builds_and_installs_from_dist():
    lines = check_install.install_block(_read("README.md"))
    assert lines[0] == "make dist"
    pips = [line for line in lines if line.startswith("pip install ")]
    assert any("--find-links dist" in p and "[emulator]" in p for p in pips), pips


def test_make_dist_builds_both_wheels_into_dist():
    makefile = _read("Makefile")
    recipe = re.search(r"^dist:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe, "no dist target"
    body = recipe.group(1)
    assert "--out-dir dist ." in body and "--out-dir dist emulator" in body
    assert re.search(r"^check-install:", makefile, re.M)
    assert "make check-install" in _read(".ci/run")


@pytest.mark.parametrize("broken, message", [
    (lambda r: r.replace(check_install.HEADING, "### Elsewhere"), "no heading"),
    (lambda r: r.replace("make dist  ", "make wheels"), "no `make dist` line"),
    (lambda r: r.replace('pip install --find-links dist "airflow', 'pipx install "airflow'), "no `pip install` line"),
])
def test_a_readme_without_the_lines_is_refused(broken, message):
    with pytest.raises(SystemExit, match=message):
        check_install.install_block(broken(_read("README.md")))
