"""Issue 10's proof: the README's "Your first DAG", as written, on real Airflow 3.3 services.

``python scripts/readme_proof.py [--dir D] [--docs 6]`` starts the loopback cluster of ``scripts/cluster.py``
(PostgreSQL, Redis, the emulator as DashScope, api-server, scheduler, dag-processor, triggerer, one Celery
worker) with a DAGs folder holding only the README's DAG file, then:

1. takes the first ``python`` block under the README heading "## Your first DAG" (so the proof breaks when
   the README's example does) and substitutes only what the README tells the reader to change: the
   documents folder and the results folder;
2. triggers the OCR DAG by hand (``airflow dags trigger <dag_id>``: no run id, no logical date) and checks
   the run has no logical date, succeeds, and made one realtime call per document (emulator stats);
3. triggers it by hand again over the same documents: 0 calls, every image from the cache;
4. after each OCR run, the README's downstream DAG (scheduled on ``qwenocr://<dag_id>/<task_id>``) runs,
   succeeds, and returns that OCR run's ``results_uri`` (read from the asset event).

Prints PASS/FAIL per check and exits 1 on a FAIL. ``scripts/cluster.py smoke --readme`` runs the same
checks on its three-worker cluster (``prepare`` + ``prove``), which is what ``make cluster-smoke`` does.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "scripts"))

HEADING = "## Your first DAG"
#: What the README tells the reader to change, and nothing else.
DOCS_PLACEHOLDER, RESULTS_PLACEHOLDER = "/data/scans/", "/data/ocr/"
DAG_FILE = "readme_first_dag.py"


BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
#: A python block whose first line starts with this is a fragment on purpose (goes inside a DAG), not a DAG.
FRAGMENT = "# Fragment"


def python_blocks(readme: str) -> list[dict]:
    """Every ```python block: ``{"heading", "line", "code", "fragment"}`` (``heading``: the last ``##`` above it;
    ``line``: 1-based line of the code's first line; ``fragment``: its first line starts with :data:`FRAGMENT`)."""
    out = []
    for m in BLOCK.finditer(readme):
        headings = re.findall(r"^##+ (.*)$", readme[: m.start()], re.M)
        code = m.group(1)
        out.append({"heading": headings[-1] if headings else "", "line": readme.count("\n", 0, m.start(1)) + 1,
                    "code": code, "fragment": code.lstrip().startswith(FRAGMENT)})
    return out


def readme_dag_code(readme: str) -> str:
    """The first ```python block after the heading; SystemExit naming what is missing otherwise."""
    start = readme.find(f"\n{HEADING}\n")
    if start < 0:
        sys.exit(f"README.md has no heading {HEADING!r}: the proof has nothing to run")
    section = readme[start + len(HEADING) + 2:]
    section = section[: m.start()] if (m := re.search(r"^## ", section, re.M)) else section
    block = BLOCK.search(section)
    if not block:
        sys.exit(f"README.md's {HEADING!r} holds no ```python block")
    code = block.group(1)
    for placeholder in (DOCS_PLACEHOLDER, RESULTS_PLACEHOLDER):
        if code.count(placeholder) != 1:
            sys.exit(f"the README's DAG should name {placeholder!r} once (the reader's substitution); "
                     f"found {code.count(placeholder)}")
    return code


def asset_names(code: str) -> tuple[str, str, str]:
    """(OCR dag id, OCR task id, downstream dag id) read from the code: the ``ocr_asset(dag, task)`` call
    names the first two; the downstream DAG is the other ``@dag`` function (dag id = function name)."""
    tree = ast.parse(code)
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "ocr_asset")
    ocr_dag, ocr_task = (a.value for a in call.args[:2])
    dags = [f.name for f in tree.body if isinstance(f, ast.FunctionDef)
            and any(isinstance(d, ast.Call) and getattr(d.func, "id", "") == "dag" for d in f.decorator_list)]
    others = [name for name in dags if name != ocr_dag]
    if ocr_dag not in dags or len(others) != 1:
        sys.exit(f"expected the OCR DAG {ocr_dag!r} and one downstream DAG in the README block, found {dags}")
    return ocr_dag, ocr_task, others[0]


def prepare(d: str, n_docs: int, dags_folder: str) -> dict:
    """Write the README DAG (substituted) into ``dags_folder`` and ``n_docs`` documents; return the plan."""
    from bench._common import small_document

    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as fh:
        code = readme_dag_code(fh.read())
    docs, results = os.path.join(d, "readme-scans") + "/", os.path.join(d, "readme-ocr") + "/"
    os.makedirs(docs, exist_ok=True)
    for i in range(n_docs):
        with open(os.path.join(docs, f"scan-{i:03d}.png"), "wb") as fh:
            fh.write(small_document(20_000 + i))
    os.makedirs(dags_folder, exist_ok=True)
    path = os.path.join(dags_folder, DAG_FILE)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(code.replace(DOCS_PLACEHOLDER, docs).replace(RESULTS_PLACEHOLDER, results))
    ocr_dag, ocr_task, downstream = asset_names(code)
    return {"n_docs": n_docs, "docs": docs, "results": results, "dag_file": path, "ocr_dag": ocr_dag,
            "ocr_task": ocr_task, "downstream": downstream}


def _xcom(state: dict, dag_id: str, run_id: str, task_id: str):
    from cluster_run import _q

    rows = _q(state, "airflow", "SELECT value FROM xcom WHERE dag_id = %s AND run_id = %s AND task_id = %s "
              "AND key = 'return_value' AND map_index = -1", (dag_id, run_id, task_id))
    if not rows:
        return None
    value = rows[0][0]  # a JSON column on Airflow 3: psycopg2 hands back the decoded value
    return json.loads(bytes(value)) if isinstance(value, (bytes, memoryview)) else value


def _downstream_runs(state: dict, dag_id: str) -> list[tuple]:
    from cluster_run import _q

    return _q(state, "airflow", "SELECT run_id, state, run_type FROM dag_run WHERE dag_id = %s ORDER BY id",
              (dag_id,))


def prove(state: dict, plan: dict) -> dict[str, bool]:
    """Two manual runs of the README's OCR DAG and the downstream DAG after each; the checks by name."""
    from cluster_run import _airflow, _calls, _emu_stats, _q, _wait_dag_parsed, _wait_run

    ocr_dag, downstream, n = plan["ocr_dag"], plan["downstream"], plan["n_docs"]
    checks: dict[str, bool] = {}
    _wait_dag_parsed(state, [ocr_dag, downstream])
    errors = _q(state, "airflow", "SELECT filename, stacktrace FROM import_error WHERE filename LIKE %s",
                (f"%{DAG_FILE}",))
    checks["the README DAG file imports without errors"] = not errors
    for run in (1, 2):
        known = {r[0] for r in _q(state, "airflow", "SELECT run_id FROM dag_run WHERE dag_id = %s", (ocr_dag,))}
        before, downstream_before = _emu_stats(state), len(_downstream_runs(state, downstream))
        t0 = time.monotonic()
        done = _airflow(state, "dags", "trigger", ocr_dag)  # by hand: no run id, no logical date
        if done.returncode:
            print(done.stderr[-1500:], file=sys.stderr)
        new = [r for r in _q(state, "airflow", "SELECT run_id, run_type, logical_date FROM dag_run "
                             "WHERE dag_id = %s", (ocr_dag,)) if r[0] not in known]
        if done.returncode or len(new) != 1:
            checks[f"run {run}: manual trigger created one run"] = False
            break
        run_id, run_type, logical_date = new[0]
        checks[f"run {run}: manual, no logical date"] = run_type == "manual" and logical_date is None
        result = _wait_run(state, ocr_dag, run_id, 300)
        calls, r429 = _calls(before, _emu_stats(state))
        summary = _xcom(state, ocr_dag, run_id, plan["ocr_task"]) or {}
        want = n if run == 1 else 0
        checks[f"run {run}: succeeded, {n} images ok"] = result == "success" and summary.get("n_ok") == n
        checks[f"run {run}: {want} calls" + (" (all from the cache)" if run == 2 else "")] = (
            calls - r429 == want and (run == 1 or summary.get("n_cached") == n))
        # the downstream DAG: one more run, asset-triggered, that read this OCR run's results
        deadline, after = time.monotonic() + 180, []
        while time.monotonic() < deadline:
            after = _downstream_runs(state, downstream)[downstream_before:]
            if after and all(r[1] in ("success", "failed") for r in after):
                break
            time.sleep(1)
        got = [_xcom(state, downstream, r[0], "load") for r in after if r[1] == "success"]
        checks[f"run {run}: {downstream} ran after it on the asset, read its results_uri"] = (
            len(after) == 1 and after[0][2] == "asset_triggered" and got == [summary.get("results_uri")])
        print(f"[readme] run {run} ({run_id}): {result} in {time.monotonic() - t0:.0f} s; {calls} calls "
              f"({r429} 429s); summary n_images={summary.get('n_images')} n_ok={summary.get('n_ok')} "
              f"n_cached={summary.get('n_cached')}; {downstream}: {[r[1:] for r in after]} → {got}", flush=True)
    return checks


def report(checks: dict[str, bool]) -> bool:
    for name, ok in checks.items():
        print(f"[check] {'PASS' if ok else 'FAIL'} {name}")
    return bool(checks) and all(checks.values())


def main() -> None:
    from cluster import down, load_state, up

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "qwenocr-readme-proof"))
    ap.add_argument("--docs", type=int, default=6, help="documents in the folder the README DAG reads")
    ap.add_argument("--keep", action="store_true", help="keep the directory (logs) after stopping")
    args = ap.parse_args()
    d = os.path.abspath(args.dir)
    t0 = time.monotonic()
    plan = prepare(d, args.docs, os.path.join(d, "dags"))
    cluster_args = argparse.Namespace(dir=d, workers=1, concurrency=4, rpm=120, tpm=2_000_000, latency_ms=200,
                                      headroom=1.0, keep=args.keep, dags_folder=os.path.join(d, "dags"))
    ok = False
    try:
        up(cluster_args)
        ok = report(prove(load_state(d), plan))
    finally:
        down(cluster_args)
    print(f"[readme] wall time {time.monotonic() - t0:.0f} s")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
