"""Check the ``dashscope`` connection form in a real browser against a real Airflow 3 api-server.

What it does (nothing outside loopback and a temp directory):

1. creates a temporary ``AIRFLOW_HOME`` (SQLite, simple auth manager with every user an admin, no DAGs),
   runs ``airflow db migrate`` and starts ``airflow api-server`` on a free 127.0.0.1 port;
2. opens the "add connection" form in headless Chromium (playwright-python driving the system's
   Chromium: ``chromium.launch(executable_path=...)``), chooses the type ``dashscope`` and checks that
   the Region field is a select offering exactly cn-beijing, ap-southeast-1 and us-east-1, with cn-beijing
   preselected and no ``null`` choice;
3. saves the connection with only an id and an API key, and reads it back through the REST API:
   the extra must hold ``region`` = ``cn-beijing`` and none of the fields left empty (no ``null``);
4. writes a screenshot of the form (PNG) and prints a JSON report; exit status 0 = every check passed,
   1 = a check failed, 2 = something needed is missing (the message says what to install).

Needs: Airflow 3.2+ (the form is declared as ``conn-fields``), the ``playwright`` package
(``pip install playwright``; its own browser download is *not* needed) and a Chromium binary
(Debian/Ubuntu: ``apt-get install chromium``; or ``--chromium PATH``).

Usage: ``python scripts/check_connection_form.py [--screenshot form.png] [--chromium /usr/bin/chromium]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

CONN_TYPE = "dashscope"
REGIONS = ["cn-beijing", "ap-southeast-1", "us-east-1"]
EXTRA_FIELDS = ["region", "workspace_id", "default_model", "timeout", "rpm", "tpm", "limiter_path", "max_retries",
                "max_retry_seconds"]
MISSING = 2


class Missing(RuntimeError):
    """Something the check needs is not installed; the message says what to install."""


def find_chromium(explicit: str | None = None) -> str:
    for candidate in (explicit, os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        path = candidate and shutil.which(candidate)
        if path:
            return path
    raise Missing("no Chromium binary found: install it (Debian/Ubuntu: `apt-get install chromium`) "
                  "or pass --chromium PATH / set CHROMIUM")


def require_playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise Missing("the playwright package is missing: `pip install playwright` (the system Chromium is "
                      "used; `playwright install` is not needed)") from None
    return sync_playwright


def require_airflow3() -> None:
    try:
        from airflow import __version__
    except ImportError:
        raise Missing("Airflow is not installed in this Python") from None
    if int(__version__.split(".")[0]) < 3:
        raise Missing(f"the api-server and conn-fields form need Airflow 3.2+, this is {__version__}")


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def airflow_env(home: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
    })
    return env


@contextlib.contextmanager
def api_server(home: Path, *, timeout: float = 180.0):
    """Yields the base URL of a fresh api-server (migrated SQLite DB in ``home``); stops it on exit."""
    port = free_port()
    env = airflow_env(home, port)
    (home / "dags").mkdir(parents=True, exist_ok=True)
    migrate = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, capture_output=True,
                             text=True, timeout=600)
    if migrate.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{migrate.stderr[-2000:]}")
    log = open(home / "api-server.log", "wb")  # closed in the finally below, after the process
    proc = subprocess.Popen([sys.executable, "-m", "airflow", "api-server", "--host", "127.0.0.1", "--port",
                             str(port), "--workers", "1"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(base + "/api/v2/monitor/health", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the api-server did not start; its log:\n"
                                       + (home / "api-server.log").read_text(errors="replace")[-3000:]) from None
                time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def api_token(base: str) -> str:
    """A JWT from the simple auth manager (every user is an admin in this set-up)."""
    with urllib.request.urlopen(base + "/auth/token", timeout=10) as resp:
        return json.loads(resp.read())["access_token"]


def get_connection(base: str, conn_id: str) -> dict:
    req = urllib.request.Request(f"{base}/api/v2/connections/{conn_id}",
                                 headers={"Authorization": f"Bearer {api_token(base)}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def check_form(base: str, chromium: str, screenshot: Path, conn_id: str = "dashscope_form_check") -> dict:
    """Drive the UI; return the facts seen (the checks are in :func:`verdict`)."""
    sync_playwright = require_playwright()
    facts: dict = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.goto(base + "/connections", wait_until="networkidle")
            page.get_by_role("button", name="Add Connection").click()
            page.locator("input[role=combobox]").first.fill("DashScope")  # the connection-type picker
            page.keyboard.press("Enter")
            page.locator("input[type=password]").first.fill("sk-form-check")  # "API Key" (standard fields)
            page.get_by_role("button", name="Extra Fields", exact=True).click()
            # The UI renders an enum field as a react-select widget: a combobox, a menu of role=option
            # entries, and a hidden input holding the chosen value.
            region = page.locator("#element_region")
            region.wait_for(timeout=30000)
            combobox = region.locator("input[role=combobox]")
            facts["region_tag"] = "select" if combobox.count() else region.evaluate(
                "e => (e.querySelector('input, textarea') || e).tagName.toLowerCase()")
            if combobox.count():
                facts["region_selected"] = region.locator("input[name=element_region]").input_value()
                combobox.focus()
                page.keyboard.press("ArrowDown")  # opens the menu
                page.get_by_role("option").first.wait_for(timeout=10000)
                facts["region_options"] = page.get_by_role("option").all_inner_texts()
                page.screenshot(path=str(screenshot.with_name(screenshot.stem + "-region-menu.png")), full_page=True)
                page.get_by_role("heading", name="Add Connection").click()  # closes the menu (Escape would close the dialog)
            page.locator("input[name=connection_id]").fill(conn_id)
            page.keyboard.press("Tab")
            page.screenshot(path=str(screenshot), full_page=True)
            page.get_by_role("button", name="Extra Fields JSON").click()
            facts["extra_json_shown"] = page.locator(".monaco-editor .view-lines").first.inner_text(timeout=15000)
            page.get_by_role("button", name="Save").click(timeout=15000)
            page.get_by_role("dialog").wait_for(state="hidden", timeout=15000)
        finally:
            browser.close()
    saved = get_connection(base, conn_id)
    facts["saved_extra"] = json.loads(saved.get("extra") or "{}")
    return facts


def verdict(facts: dict) -> list[str]:
    """The failed checks (empty = all passed)."""
    failed = []
    if facts.get("region_tag") != "select":
        failed.append(f"Region is not a select (found <{facts.get('region_tag')}>)")
    else:
        options = [o for o in facts.get("region_options", []) if o]
        if sorted(options) != sorted(REGIONS):
            failed.append(f"Region options are {facts.get('region_options')}, expected {REGIONS}")
        if any(str(o).strip().lower() in ("", "null", "none") for o in facts.get("region_options", [])):
            failed.append("Region offers a null choice")
        if facts.get("region_selected") != "cn-beijing":
            failed.append(f"Region preselects {facts.get('region_selected')!r}, expected 'cn-beijing'")
    extra = facts.get("saved_extra", {})
    if extra.get("region") != "cn-beijing":
        failed.append(f"saved region is {extra.get('region')!r}, expected 'cn-beijing'")
    stored_empty = sorted(k for k, v in extra.items() if v in (None, ""))
    if stored_empty:
        failed.append(f"empty fields were stored: {stored_empty} (extra: {extra})")
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--screenshot", default="connection_form.png", help="where the PNG of the form goes")
    parser.add_argument("--chromium", help="Chromium binary (default: chromium on PATH)")
    parser.add_argument("--keep-home", action="store_true", help="keep the temporary AIRFLOW_HOME (for its log)")
    args = parser.parse_args(argv)
    try:
        require_airflow3()
        require_playwright()
        chromium = find_chromium(args.chromium)
    except Missing as exc:
        print(f"MISSING: {exc}", file=sys.stderr)
        return MISSING
    home = Path(tempfile.mkdtemp(prefix="qwenocr-form-check-"))
    try:
        with api_server(home) as base:
            facts = check_form(base, chromium, Path(args.screenshot).resolve())
        failed = verdict(facts)
        print(json.dumps({"ok": not failed, "failed": failed, "screenshot": str(Path(args.screenshot).resolve()),
                          **{k: v for k, v in facts.items() if k != "region_html"}}, indent=2, ensure_ascii=False))
        return 1 if failed else 0
    finally:
        if not args.keep_home:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
