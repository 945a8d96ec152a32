"""Test configuration shared by every level.

Fixtures live in tests/fixtures/ (one module per stand-in: emulator, s3, postgres, redis, airflow) and are
loaded as plugins here, so that each stand-in has one owner and one place.
"""

import os
import pathlib
import tempfile

import pytest

# Airflow reads its configuration at import: give every test session its own home, no examples.
_HOME = tempfile.mkdtemp(prefix="qwenocr-airflow-home-")
os.environ.setdefault("AIRFLOW_HOME", _HOME)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(pathlib.Path(__file__).parent / "dags"))

REPO = pathlib.Path(__file__).resolve().parent
RECORDINGS = REPO / "tests" / "data" / "recordings"  # copied from cnblogs/dashscope-sdk (MIT)


def pytest_configure(config):
    """Our deprecation category is an error (see pyproject.toml's filterwarnings: it is added here, after
    AIRFLOW_HOME is set, because resolving the class imports Airflow)."""
    config.addinivalue_line("filterwarnings", "error::airflow_provider_qwenocr.exceptions.QwenOcrDeprecationWarning")


@pytest.fixture(autouse=True)
def _own_result_cache(tmp_path, monkeypatch):
    """Each test gets its own default result cache (``[qwenocr] cache_uri``): the default is per DAG and
    shared across runs by design, so tests reusing a DAG id would otherwise see each other's rows."""
    monkeypatch.setenv("AIRFLOW__QWENOCR__CACHE_URI", str(tmp_path / "qwenocr-cache" / "{dag_id}"))


pytest_plugins = [
    p
    for p in ("tests.fixtures.emulator", "tests.fixtures.s3", "tests.fixtures.postgres", "tests.fixtures.redis",
              "tests.fixtures.airflow")
    if (REPO / (p.replace(".", "/") + ".py")).exists()
]
