"""The suite carries its own data: no file in the repository may read a path outside it.

A user's clone has no ``../shared`` folder beside it (that folder exists only in the developers'
workspace), so a reference to it is a test that passes here and fails everywhere else.
"""

from __future__ import annotations

import re
import subprocess

from tests.conftest_paths import RECORDINGS, REPO

# "../shared", 'parent / "shared"', parents[N] / "shared" … any way of stepping out of the repo into shared/.
_OUTSIDE = re.compile(r"""(\.\./+shared\b|parents?(\[\d+\])?\s*/\s*["']shared["']|\.parent\.parent\s*/\s*["']shared)""")
_SKIP_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".gif", ".tif", ".tiff", ".webp", ".bmp")


def _tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    return [line for line in out.splitlines() if line and not line.lower().endswith(_SKIP_SUFFIXES)]


def test_no_file_refers_to_the_workspace_shared_folder():
    offenders = []
    for rel in _tracked_files():
        path = REPO / rel
        if not path.is_file() or rel == "tests/unit/test_self_contained.py":
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if _OUTSIDE.search(line):
                offenders.append(f"{rel}:{n}: {line.strip()[:120]}")
    assert not offenders, "files refer to ../shared (absent from a user's clone):\n" + "\n".join(offenders)


def test_the_guard_pattern_catches_the_forms_we_once_used():
    shared = "sha" + "red"  # spelled apart so that this file itself is no reference to the folder
    assert _OUTSIDE.search(f'RECORDINGS = REPO.parent / "{shared}" / "dashscope-recordings"')
    assert _OUTSIDE.search("see ../shared/reference/dashscope-api.md")
    assert _OUTSIDE.search("pathlib.Path(__file__).resolve().parents[2].parent / 'shared'")
    assert not _OUTSIDE.search("a budget shared by every worker")


def test_recordings_ship_inside_the_repository_with_their_licence():
    assert RECORDINGS.is_relative_to(REPO)
    assert (RECORDINGS / "LICENSE.cnblogs-dashscope-sdk").read_text().startswith("MIT License")
    assert len(list(RECORDINGS.glob("*.response.body.txt"))) >= 20
