"""The service's temporary upload: a local file becomes an ``oss://`` URL the service can read (48 h).

Why: a whole PDF goes to ``qwen3.5-ocr`` as ``input_file`` with a ``file_url`` (reference §10); inline PDF
data is not documented. A user with only a folder of PDFs and a key has no public URL to give, and the
service's own upload needs nothing else: ``GET {root}/api/v1/uploads?action=getPolicy&model=M`` returns a
short-lived OSS form policy, the file is POSTed to the policy's ``upload_host``, and the object is then
``oss://<upload_dir>/<name>``. Requests that use it send ``X-DashScope-OssResourceResolve: enable``.

Facts and their sources: the two steps and the header are the official dashscope SDK's own
(``dashscope.utils.oss_utils.OssUtils``, reference §7), so we call that code instead of copying it. The
official page "Upload local files to get temporary URLs" (help.aliyun.com / alibabacloud.com
``model-studio/get-temporary-file-url``, Feb and Oct 2026 copies; reference §10) says: the ``oss://`` URL is
valid **48 hours**, bound to the model it was uploaded for and to the main account; ≤ 1 GB per file (and the
model's own limit); the policy call is limited to 100 QPS per account and model; HTTP callers must send the
resolve header; and it is meant for development, not production volume (use your own object store there:
presigned S3 URLs). Uploads are not inference calls: no RPM/TPM charge, but the same retries (a dropped
connection is retried), breaker and error mapping as every call.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from airflow_provider_qwenocr.dashscope.breaker import CircuitBreaker
from airflow_provider_qwenocr.dashscope.calls import guarded, run_with_retries
from airflow_provider_qwenocr.dashscope.config import ClientConfig
from airflow_provider_qwenocr.dashscope.errors import PermanentError, from_exception, redact

#: How long a temporary upload stays readable by the service (reference §10).
UPLOAD_TTL = timedelta(hours=48)
#: The header every request that reads an ``oss://`` URL must carry (reference §3/§7).
OSS_RESOLVE_HEADER = "X-DashScope-OssResourceResolve"


def _upload_once(config: ClientConfig, path: str, model: str) -> str:
    from dashscope.common.error import UploadFileException
    from dashscope.utils.oss_utils import OssUtils

    from airflow_provider_qwenocr.dashscope.realtime import response_error

    key = config.api_key
    try:
        policy = OssUtils.get_upload_certificate(model=model, api_key=key, base_address=config.native_base,
                                                 workspace=config.workspace_id, request_timeout=config.timeout)
    except Exception as exc:  # transport trouble on the policy call
        raise from_exception(exc, secret=key) from None
    error = response_error(policy, secret=key)
    if error is not None:
        raise error
    try:
        url, _ = OssUtils.upload(model=model, file_path=path, api_key=key, upload_certificate=policy.output)
    except UploadFileException as exc:  # OSS answered, but not 200 (policy expired, too large …)
        raise PermanentError(redact(exc, key), code="UploadFailed") from None
    except Exception as exc:
        raise from_exception(exc, secret=key) from None
    return url


def temporary_upload(config: ClientConfig, path: str | os.PathLike, *, model: str,
                     breaker: CircuitBreaker | None = None, sleep: Callable[[float], Any] = time.sleep) -> str:
    """Upload the local file ``path`` for ``model``; returns its ``oss://`` URL (readable for 48 h).

    Raises a typed :class:`~.errors.QwenOcrError` (``InvalidApiKey``, throttling after retries …) or
    ``FileNotFoundError`` for a missing file (before any request).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(path)
    breaker = breaker if breaker is not None else CircuitBreaker()
    return run_with_retries(
        lambda charge: guarded(lambda: _upload_once(config, path, model), breaker=breaker, limiter=None, tokens=0),
        max_retries=config.max_retries, max_retry_seconds=config.max_retry_seconds, sleep=sleep)
