"""Issue 20 item 14: the README's "install from a clone" lines, run as written, in a fresh virtual env.

Why a script that reads the README: neither distribution is on an index yet, so a reader installs from
wheels built in a clone, and the lines that do it must keep working. This check takes the ```bash block
under the README heading :data:`HEADING` (so it breaks when the README's lines do), then:

1. runs its ``make dist`` line in the repository (both wheels into ``dist/``);
2. makes a fresh virtual env (``uv venv --seed``: with pip, as a user has) holding only Airflow
   (``--airflow``, default 3.3.2: the "existing Airflow"; installed with uv from its cache, seconds);
3. runs each ``pip install ...`` line of the block with that env's pip, in the repository (``dist/`` is
   relative), exactly as written;
4. from a directory outside the clone (so nothing is imported from the work tree): imports the provider
   and the emulator from site-packages, finds the provider through Airflow's ``apache_airflow_provider``
   entry point and its ProvidersManager (the ``dashscope`` connection type), and runs
   ``qwenocr-emulator --help``.

``python scripts/check_install.py [--keep DIR] [--airflow 3.3.2]``; exits 1 naming the failed step.
``make check-install`` runs it; .ci/run runs it right after ``make test``. Bounded: each step has a timeout.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADING = "### From a clone (until the distributions are published)"
STEP_TIMEOUT = 600  # seconds per step; pip with a warm cache takes ~30 s, a cold one a few minutes

#: Run with the fresh env's python, from outside the clone.
IMPORT_CHECK = """
import os, sys
import airflow_provider_qwenocr, qwenocr_emulator
from qwenocr_emulator import EmulatorServer
for mod in (airflow_provider_qwenocr, qwenocr_emulator):
    assert "site-packages" in mod.__file__, f"{mod.__name__} imported from {mod.__file__}, not the installed wheel"
from importlib.metadata import entry_points
eps = [e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("airflow_provider_qwenocr")]
assert len(eps) == 1, f"provider entry point: {eps}"
info = eps[0].load()()
assert info["package-name"] == "airflow-provider-qwenocr", info
import warnings
from airflow.providers_manager import ProvidersManager
pm = ProvidersManager()
assert "airflow-provider-qwenocr" in pm.providers, sorted(pm.providers)
with warnings.catch_warnings():  # Airflow 3.3 points .hooks at the task SDK's manager; same registry
    warnings.simplefilter("ignore")
    assert "dashscope" in pm.hooks, "connection type dashscope not discovered"
print("installed:", airflow_provider_qwenocr.__version__, "emulator", qwenocr_emulator.__version__,
      "provider discovered with connection type dashscope")
"""


def install_block(readme: str) -> list[str]:
    """The commands of the first ```bash block under :data:`HEADING` (comments and blanks dropped).

    SystemExit when the heading, the block, the ``make dist`` line or a ``pip install`` line is missing.
    """
    start = readme.find(f"\n{HEADING}\n")
    if start < 0:
        sys.exit(f"README.md has no heading {HEADING!r}: nothing to check")
    section = readme[start + len(HEADING) + 2:]
    section = section[: m.start()] if (m := re.search(r"^#{2,3} ", section, re.M)) else section
    block = re.search(r"^```bash\n(.*?)^```", section, re.S | re.M)
    if not block:
        sys.exit(f"README.md's {HEADING!r} holds no ```bash block")
    lines = [line.split(" #")[0].strip() for line in block.group(1).splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if "make dist" not in lines:
        sys.exit(f"README.md's {HEADING!r} block has no `make dist` line: {lines}")
    if not any(line.startswith("pip install ") for line in lines):
        sys.exit(f"README.md's {HEADING!r} block has no `pip install` line: {lines}")
    return lines


def _run(what: str, cmd: list[str], **kwargs) -> None:
    shown = [c if len(c) < 200 else "<script>" for c in cmd]
    print(f"--- {what}: {shlex.join(shown)}", flush=True)
    try:
        subprocess.run(cmd, check=True, timeout=STEP_TIMEOUT, **kwargs)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        sys.exit(f"FAIL {what}: {exc}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--airflow", default="3.3.2", help="the 'existing Airflow' version in the fresh env")
    ap.add_argument("--keep", help="make the env here and keep it (default: a temp dir, removed)")
    args = ap.parse_args()

    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as fh:
        lines = install_block(fh.read())
    uv = shutil.which("uv", path=os.path.dirname(sys.executable)) or shutil.which("uv")
    if not uv:
        sys.exit("FAIL: uv not found beside this python or on PATH (make check-install uses .venv/bin/uv)")
    work = args.keep or tempfile.mkdtemp(prefix="qwenocr-install-check-")
    venv = os.path.join(work, "venv")
    bindir = os.path.join(venv, "bin")
    # The env's own pip and python first on PATH; nothing of the caller's venv leaks in.
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(PATH=bindir + os.pathsep + env.get("PATH", ""), VIRTUAL_ENV=venv,
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    try:
        _run("fresh env", [uv, "venv", "--quiet", "--seed", "--python", sys.executable, venv])
        _run(f"existing Airflow {args.airflow}",
             [uv, "pip", "install", "--quiet", "--python", os.path.join(bindir, "python"),
              f"apache-airflow=={args.airflow}"])
        for line in lines:
            if line == "make dist":
                _run("README: make dist", ["make", "dist"], cwd=REPO)
            elif line.startswith("pip install "):
                _run(f"README: {line}", ["bash", "-c", line], cwd=REPO, env=env)
        outside = os.path.join(work, "elsewhere")
        os.makedirs(outside, exist_ok=True)
        _run("imports and provider discovery", [os.path.join(bindir, "python"), "-c", IMPORT_CHECK],
             cwd=outside, env=env)
        _run("emulator command", [os.path.join(bindir, "qwenocr-emulator"), "--help"], cwd=outside, env=env,
             stdout=subprocess.DEVNULL)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print("PASS: the README's install-from-a-clone lines work in a fresh env")


if __name__ == "__main__":
    main()
