"""Batch input at volume: 12-MP scans in S3 (moto) as inline base64 vs presigned URLs (issue 11).

Each measurement is a fresh child process running the batch hook's own build path —
``expand_sources("s3://…")`` → ``runs.batch.prepared_steps`` (4 prepare threads, the operator's default) →
``BatchBuilder`` spooling JSONL part files to disk → ``build()`` — against a moto S3 server in another
process, without uploading the parts (that is the Batch service's side). Reported per run: number of
input files, lines, bytes, build time, and the child's peak RSS beside its RSS after imports (``VmHWM`` via
bench/rss.py — not ``ru_maxrss``, which also holds the peak of the process that started the child).

Objects: ``--distinct`` distinct 4000×3000 JPEG scans (bench/fullres.py's generator). URL mode never reads an
object, so its keys are server-side copies of those scans (``copy_object``). Inline mode reads and prepares
every object and the builder sends identical bytes once, so each inline key holds a scan with a distinct
trailer after the JPEG end-of-image marker (same pixels, distinct bytes). moto keeps objects above 256 KB
in temp files (``MOTO_S3_DEFAULT_KEY_BUFFER_SIZE``), not in RAM.
Usage: python bench/batch_volume.py [--url-n 10000] [--inline-n 400] [--distinct 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._common import REPO, free_port, machine

_CHILD = r"""
import json, sys, time
from bench.rss import peak_rss_kb
from airflow_provider_qwenocr.dashscope.batch_jsonl import BatchBuilder
from airflow_provider_qwenocr.runs.batch import prepared_steps
from airflow_provider_qwenocr.runs.presign import Presigner, expiry_seconds
from airflow_provider_qwenocr.runs.sources import expand_sources
import boto3, PIL.Image  # noqa: F401  (in the baseline)
mode, uri, spool = sys.argv[1], sys.argv[2], sys.argv[3]
import os; os.makedirs(spool, exist_ok=True)
base = peak_rss_kb()
t0 = time.perf_counter()
sources = expand_sources(uri, aws_conn_id="aws_default")
t_list = time.perf_counter() - t0
builder = BatchBuilder(task="text_recognition", model="qwen-vl-ocr", spool_dir=spool)
presigner = Presigner(aws_conn_id="aws_default", expires_in=expiry_seconds("24h")) if mode == "url" else None
for add in prepared_steps(builder, sources, None, 4, presigner=presigner):
    add()
plan = builder.build()
wall = time.perf_counter() - t0
peak = peak_rss_kb()
print(json.dumps({"mode": mode, "n_sources": len(sources), "parts": len(plan.parts),
                  "lines": [p.n_lines for p in plan.parts], "bytes": sum(p.n_bytes for p in plan.parts),
                  "max_part_bytes": max((p.n_bytes for p in plan.parts), default=0),
                  "rejected": len(plan.rejected), "list_s": t_list, "build_s": wall,
                  "cpu_s": time.process_time(), "baseline_kb": base, "peak_kb": peak}))
"""


class MotoProcess:
    """``moto_server`` in its own process on a free loopback port (its memory is not the builder's)."""

    def __init__(self, spill_dir: str) -> None:
        self.port = free_port()
        self.env = {**os.environ, "MOTO_S3_DEFAULT_KEY_BUFFER_SIZE": str(256 * 1024), "TMPDIR": spill_dir}
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> MotoProcess:
        import urllib.request

        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):
            try:
                urllib.request.urlopen(self.url + "/moto-api/", timeout=1)
                return self
            except OSError:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("moto server did not start")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # it deletes its spilled objects first: ~30 GB for 10,000 12-MP copies
            try:
                self.proc.wait(300)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def s3_client(url: str):
    import boto3

    return boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def fill(url: str, scans: list[bytes], url_n: int, inline_n: int) -> None:
    s3 = s3_client(url)
    s3.create_bucket(Bucket="scans")
    for i, data in enumerate(scans):
        s3.put_object(Bucket="scans", Key=f"src/{i:03d}.jpg", Body=data)

    def copy(i: int) -> None:
        s3.copy_object(Bucket="scans", Key=f"url/{i:06d}.jpg", CopySource={"Bucket": "scans",
                                                                          "Key": f"src/{i % len(scans):03d}.jpg"})

    def put_distinct(i: int) -> None:
        body = scans[i % len(scans)] + f"distinct-{i:06d}".encode()  # after EOI: same pixels, other bytes
        s3.put_object(Bucket="scans", Key=f"inline/{i:06d}.jpg", Body=body)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(copy, range(url_n)))
        list(pool.map(put_distinct, range(inline_n)))


def run_child(url: str, mode: str, prefix: str, spool: str) -> dict:
    env = {**os.environ, "AIRFLOW_HOME": os.path.join(spool, "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({"conn_type": "aws", "login": "testing", "password": "testing",
                                                   "extra": {"region_name": "us-east-1", "endpoint_url": url}})}
    out = subprocess.run([sys.executable, "-c", _CHILD, mode, f"s3://scans/{prefix}/", os.path.join(spool, "parts")],
                         env=env, cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(r: dict) -> str:
    return (f"{r['mode']:>6}: {r['n_sources']:>6} images → {r['parts']} file(s), lines/file {r['lines'][:3]}"
            f"{'…' if len(r['lines']) > 3 else ''}, {r['bytes'] / 1e6:,.1f} MB (largest file "
            f"{r['max_part_bytes'] / 1e6:,.1f} MB), build {r['build_s']:.1f} s (listing {r['list_s']:.1f} s, "
            f"CPU {r['cpu_s']:.1f} s), peak RSS {r['peak_kb'] / 1024:.0f} MB (after imports "
            f"{r['baseline_kb'] / 1024:.0f} MB), rejected {r['rejected']}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url-n", type=int, default=10_000)
    ap.add_argument("--inline-n", type=int, default=400)
    ap.add_argument("--distinct", type=int, default=20)
    args = ap.parse_args()
    from bench.fullres import write_scans

    with tempfile.TemporaryDirectory(prefix="qwenocr-bench-volume-") as tmp:
        write_scans(os.path.join(tmp, "scans"), args.distinct)
        scans = [open(os.path.join(tmp, "scans", f), "rb").read() for f in sorted(os.listdir(os.path.join(tmp, "scans")))]
        spill = os.path.join(tmp, "moto")
        os.makedirs(spill)
        with MotoProcess(spill) as moto:
            t0 = time.perf_counter()
            fill(moto.url, scans, args.url_n, args.inline_n)
            print(f"moto: {args.url_n} URL-mode keys (copies of {len(scans)} scans) + {args.inline_n} distinct "
                  f"inline keys in {time.perf_counter() - t0:.0f} s; load {os.getloadavg()[0]:.1f}")
            results = []
            for mode, prefix, _n in (("url", "url", args.url_n), ("inline", "inline", args.inline_n)):
                spool = os.path.join(tmp, f"run-{mode}")
                os.makedirs(spool)
                load = os.getloadavg()[0]
                r = run_child(moto.url, mode, prefix, spool)
                r["load"] = load
                results.append(r)
                print(report(r) + f"; load {load:.1f}")
                subprocess.run(["rm", "-rf", os.path.join(spool, "parts")], check=False)
    url, inline = results
    from airflow_provider_qwenocr.dashscope.batch_jsonl import MAX_FILE_BYTES, MAX_LINES

    # lines one inline file holds: measured when the run filled several, else the size limit ÷ the mean line
    n_lines = sum(inline["lines"])
    per_file = (max(inline["lines"]) if inline["parts"] > 1 else
                min(MAX_LINES, MAX_FILE_BYTES // max(1, -(-inline["bytes"] // max(1, n_lines)))))
    files_10k = -(-10_000 // per_file) if per_file else 0
    print(f"machine: {machine()}")
    print(f"url_files={url['parts']} url_images={url['n_sources']} url_build_s={url['build_s']:.1f} "
          f"url_peak_rss_mb={url['peak_kb'] / 1024:.0f} inline_files={inline['parts']} "
          f"inline_images={inline['n_sources']} inline_lines_per_file={per_file} "
          f"inline_files_for_10k={files_10k} inline_build_s={inline['build_s']:.1f} "
          f"inline_s_per_image={inline['build_s'] / max(1, inline['n_sources']):.3f} "
          f"inline_peak_rss_mb={inline['peak_kb'] / 1024:.0f}")


if __name__ == "__main__":
    main()
