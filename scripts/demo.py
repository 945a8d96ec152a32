"""``make demo``: the local example DAG, offline, twice — the second run must cost nothing.

1. starts the DashScope emulator in this process on a free loopback port (real OCR with rapidocr);
2. prepares ``.demo/`` at the repository root: AIRFLOW_HOME (``airflow db migrate`` once), the embedded
   SQLite warehouse ``.demo/warehouse.sqlite``, connections as ``AIRFLOW_CONN_*`` environment variables;
3. runs ``airflow dags test qwen_ocr_local_to_warehouse`` (a subprocess, as a user would) over the sample
   documents shipped in ``dags/sample_docs/``, then prints rows queried back from the warehouse, the typed
   key-information table, and the run's token usage and cost;
4. runs it again and prints the API calls the emulator saw and the rows added: 0 and 0;
5. runs ``qwen_ocr_pdf_documents`` twice over ``dags/sample_pdfs/`` (``qwen3.5-ocr``, whole PDFs per request
   through the temporary upload): the documents table with the invoice's fields from both pages, each
   document's tokens and cost (``qwen3.5-ocr``'s price is unknown: printed as unknown, not 0), and 0
   requests on the second run.

``.demo/`` is kept between invocations (result cache + warehouse), so a second ``make demo`` also makes
0 API calls and adds 0 rows. ``make clean`` removes it. Demo code lives here, not in the package.
"""

from __future__ import annotations

import json
import os
import pathlib
import sqlite3
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
DEMO = REPO / ".demo"
DAG_ID = "qwen_ocr_local_to_warehouse"
DOCUMENTS_DAG_ID = "qwen_ocr_pdf_documents"
WAREHOUSE = DEMO / "warehouse.sqlite"


def _env(base_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(DEMO / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW_CONN_DASHSCOPE_DEFAULT": json.dumps(
            {"conn_type": "dashscope", "password": "sk-demo-emulator", "host": base_url}),
        "AIRFLOW_CONN_QWENOCR_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": str(WAREHOUSE)}),
    })
    return env


def _airflow(args: list[str], env: dict[str, str], log: pathlib.Path) -> float:
    t0 = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.run([sys.executable, "-m", "airflow", *args], env=env, stdout=out,
                              stderr=subprocess.STDOUT, cwd=REPO)
    if proc.returncode != 0:
        print(log.read_text()[-6000:])
        raise SystemExit(f"`airflow {' '.join(args)}` failed (rc={proc.returncode}); full log: {log}")
    return time.monotonic() - t0


def _query(sql: str) -> list[sqlite3.Row]:
    if not WAREHOUSE.exists():
        return []
    con = sqlite3.connect(WAREHOUSE)
    con.row_factory = sqlite3.Row
    try:
        return con.execute(sql).fetchall()
    except sqlite3.OperationalError:  # tables not created yet
        return []
    finally:
        con.close()


def _totals() -> dict[str, float]:
    rows = _query('SELECT COUNT(*) AS n FROM "ocr_results"')
    ledger = _query('SELECT COALESCE(SUM("input_tokens"),0) AS i, COALESCE(SUM("output_tokens"),0) AS o, '
                    'COALESCE(SUM("image_tokens"),0) AS img, COALESCE(SUM("cost_cny"),0) AS cny, '
                    'COALESCE(SUM("cost_usd"),0) AS usd FROM "ocr_cost_ledger"')
    out = {"rows": rows[0]["n"] if rows else 0}
    out.update(dict(ledger[0]) if ledger else {"i": 0, "o": 0, "img": 0, "cny": 0.0, "usd": 0.0})
    return out


def _print_warehouse() -> None:
    print(f"\nWarehouse {WAREHOUSE.relative_to(REPO)} — table ocr_results (a few rows):")
    for r in _query('SELECT "source", "task", "status", "text" FROM "ocr_results" '
                    'WHERE "task" = \'text_recognition\' ORDER BY "source"'):
        text = (r["text"] or "").replace("\n", " | ")
        print(f"  {pathlib.Path(r['source']).name:20} {r['status']:5} {text[:70]}")
    kie = _query('SELECT * FROM "ocr_kie" ORDER BY "source"')
    if kie:
        skip = {"key", "source", "page", "sha256", "model", "status", "dag_id", "run_id", "loaded_at"}
        print("\nTable ocr_kie (typed fields from receipt_schema.json; None = not on the document):")
        for r in kie:
            fields = {k: r[k] for k in r.keys() if k not in skip}
            print(f"  {pathlib.Path(r['source']).name:18} {json.dumps(fields, ensure_ascii=False)}")


def _money(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.6f}"


def _documents_demo(srv, env: dict[str, str]) -> None:
    """The PDF documents DAG, twice: documents + pages tables, per-document figures, a free re-run."""
    for n in (1, 2):
        srv.reset_stats()
        took = _airflow(["dags", "test", DOCUMENTS_DAG_ID], env, DEMO / f"documents_run{n}.log")
        requests = srv.stats().get("requests", {}).get("responses", 0)
        if n == 1:
            print(f"\nTable ocr_documents (one row per document; {DOCUMENTS_DAG_ID}):")
            fields = ("发票号码", "开票日期", "金额__合计金额", "金额__币种")
            for r in _query('SELECT * FROM "ocr_documents" ORDER BY "source", "task"'):
                kie = {k: r[k] for k in fields if k in r.keys() and r[k] is not None}
                print(f"  {pathlib.Path(r['source']).name:15} {r['task']:26} {r['pages']} pages, "
                      f"{r['total_tokens']} tokens, USD {_money(r['cost_usd'])} {json.dumps(kie, ensure_ascii=False)}")
            pages = _query('SELECT COUNT(*) AS n FROM "ocr_results" WHERE "page" IS NOT NULL')
            print(f"  page rows in ocr_results: {pages[0]['n'] if pages else 0}")
        print(f"\nRun {n}: `airflow dags test {DOCUMENTS_DAG_ID}` in {took:.1f} s — {requests} whole-document "
              f"requests (Responses API)")


def main() -> None:
    sys.path.insert(0, str(REPO))
    from qwenocr_emulator import EmulatorServer

    DEMO.mkdir(exist_ok=True)
    (DEMO / "airflow").mkdir(exist_ok=True)
    srv = EmulatorServer(host="127.0.0.1", port=0, engine="rapidocr").start()
    try:
        env = _env(srv.base_url)
        print(f"Emulator (offline DashScope) at {srv.base_url}; AIRFLOW_HOME={env['AIRFLOW_HOME']}")
        took = _airflow(["db", "migrate"], env, DEMO / "db_migrate.log")
        print(f"airflow db migrate: {took:.1f} s")
        for n in (1, 2):
            before = _totals()
            srv.reset_stats()
            took = _airflow(["dags", "test", DAG_ID], env, DEMO / f"dags_test_run{n}.log")
            calls = srv.stats().get("ocr_calls", 0)
            after = _totals()
            new_rows = after["rows"] - before["rows"]
            if n == 1:
                _print_warehouse()
            print(f"\nRun {n}: `airflow dags test {DAG_ID}` in {took:.1f} s — {calls} API calls, "
                  f"{new_rows} new rows ({after['rows']} rows in ocr_results)")
            print(f"  usage billed this run: {after['i'] - before['i']} input tokens "
                  f"({after['img'] - before['img']} image), {after['o'] - before['o']} output tokens; "
                  f"cost CNY {after['cny'] - before['cny']:.6f} / USD {after['usd'] - before['usd']:.6f}")
            print(f"  all runs so far: CNY {after['cny']:.6f} / USD {after['usd']:.6f} (ledger: ocr_cost_ledger)")
        boxes = sorted((DEMO / "airflow" / "qwenocr" / "boxes").glob("*.png"))
        if boxes:
            print(f"\nBoxes drawn on the receipts: {', '.join(str(p.relative_to(REPO)) for p in boxes)}")
        _documents_demo(srv, env)
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
