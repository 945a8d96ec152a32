"""A fresh clone anywhere (issue 17 item 6): the suite's PostgreSQL and Redis start from any folder.

Docker users commonly work as root in ``/root`` (or a ``mktemp -d``), a folder other users cannot enter. As
root the PostgreSQL server runs as another user, who then cannot run the pgserver wheel's binaries inside
the venv there (``runuser: failed to execute …/initdb: Permission denied``). Here the wheel's files are put
behind such a closed folder (linked, so nothing is downloaded) and the fixture's own lookup finds them
there. Paths with spaces are covered for both servers (pg_ctl hands its ``-o`` options to ``/bin/sh``).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile

import pytest

from tests.fixtures import postgres as pg_fixture
from tests.fixtures import redis as redis_fixture

pytestmark = pytest.mark.integration

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="only root hands PostgreSQL to another user")


@pytest.fixture
def spaced_dir():
    """A throw-away dir whose path holds spaces, open to the server user (as /tmp is)."""
    base = tempfile.mkdtemp(prefix="qwenocr any where ")
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def _select_one(server: pg_fixture.Postgres) -> int:
    import psycopg2

    con = psycopg2.connect(host=server.host, port=server.port, user=server.user, dbname="postgres")
    with con.cursor() as cur:
        cur.execute("SELECT 1")
        (one,) = cur.fetchone()
    con.close()
    return one


def _stop(stop: list[str] | None) -> None:
    if stop:
        subprocess.run(stop, capture_output=True, timeout=60)


def _link(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


@pytest.fixture
def wheel_in_a_closed_folder(monkeypatch, tmp_path):
    """The pgserver wheel as a venv in a 0700 folder holds it: ``<closed>/site packages/pgserver/...``."""
    if not os.environ.get("XDG_RUNTIME_DIR"):  # pgserver asks platformdirs for one at import (a warning in CI)
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    real_bindir = pg_fixture._bundled_bindir()
    if not real_bindir:
        pytest.skip(f"the pgserver wheel is not installed: {pg_fixture.INSTALL_HINT}")
    site = os.path.dirname(os.path.dirname(os.path.dirname(real_bindir)))
    closed = tempfile.mkdtemp(prefix="qwenocr closed ")
    os.chmod(closed, 0o700)
    fake_site = os.path.join(closed, "my clone", "site packages")
    pginstall = os.path.join(fake_site, "pgserver", "pginstall")
    for part in ("bin", "lib", "share"):
        shutil.copytree(os.path.join(site, "pgserver", "pginstall", part), os.path.join(pginstall, part),
                        symlinks=True, copy_function=_link)
    shutil.copytree(os.path.join(site, "pgserver.libs"), os.path.join(fake_site, "pgserver.libs"), symlinks=True,
                    copy_function=_link)
    monkeypatch.setattr(pg_fixture, "_system_binary", lambda name: None)
    monkeypatch.setattr(pg_fixture, "_bundled_bindir", lambda: os.path.join(pginstall, "bin"))
    yield closed
    shutil.rmtree(closed, ignore_errors=True)


@as_root
def test_root_starts_the_wheels_postgres_from_a_closed_folder(wheel_in_a_closed_folder, spaced_dir):
    closed = wheel_in_a_closed_folder
    initdb, pg_ctl = pg_fixture.pg_binaries()
    assert initdb.startswith(closed + os.sep) and pg_ctl.startswith(closed + os.sep)
    user = pg_fixture._server_user().pw_name
    denied = subprocess.run(pg_fixture._as_user(user, ["test", "-x", initdb]), capture_output=True, timeout=30)
    assert denied.returncode != 0  # the situation of the issue: the server user gets Permission denied
    stop = None
    try:
        server, stop = pg_fixture.start_postgres(spaced_dir)
        assert _select_one(server) == 1
        assert all(not part.startswith(closed) for part in stop)  # runs from the server's own dir
    finally:
        _stop(stop)
    assert stat.S_IMODE(os.stat(closed).st_mode) == 0o700  # the user's folder is not opened up


@as_root
def test_root_names_a_data_dir_the_server_user_cannot_enter(tmp_path):
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    (closed / "pg").mkdir()
    with pytest.raises(RuntimeError, match="cannot enter"):
        pg_fixture.start_postgres(str(closed / "pg"))
    assert stat.S_IMODE(closed.stat().st_mode) == 0o700


def test_postgres_from_a_path_with_spaces(spaced_dir):
    if not pg_fixture.pg_binaries():
        pytest.skip(f"no PostgreSQL server binaries: {pg_fixture.INSTALL_HINT}")
    base = os.path.join(spaced_dir, "pg data")
    os.makedirs(base)
    stop = None
    try:
        server, stop = pg_fixture.start_postgres(base)
        assert _select_one(server) == 1
        assert os.path.exists(os.path.join(base, "sock", f".s.PGSQL.{server.port}"))  # the quoted -k dir
    finally:
        _stop(stop)


def test_redis_from_a_path_with_spaces(spaced_dir):
    if not redis_fixture.redis_binary():
        pytest.skip(f"no redis-server binary: {redis_fixture.INSTALL_HINT}")
    import redis

    base = os.path.join(spaced_dir, "redis data")
    os.makedirs(base)
    proc, server = redis_fixture.start_redis(base)
    try:
        client = redis.Redis.from_url(server.url)
        assert client.set("k", "v") and client.get("k") == b"v"
        client.close()
        assert os.path.getsize(os.path.join(base, "redis.log")) > 0
    finally:
        proc.kill()
        proc.wait(10)
