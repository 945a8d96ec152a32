"""Realtime OCR over the OpenAI-compatible Responses API: a whole document per request (qwen3.5-ocr and later).

What the service documents (reference §10): ``POST {root}/compatible-mode/v1/responses``, "only qwen3.5-ocr
and later"; ``input`` holds a user message whose content parts are ``input_text``, ``input_image`` (a URL or
a data URL) and ``input_file`` (``file_url``: a whole PDF, ≤ 50 pages, ≤ 100 MB); the built-in task goes in
``ocr_options`` as an extra body field, and from qwen3.5-ocr on it is **combined** with the user's prompt
(the text answers the prompt, ``output[0].content[0].ocr_result`` holds the task's result). Several images
in one request are pages of one document. Answers become today's result types (``ocr/layouts.py``).

Why plain JSON over ``requests`` and not ``openai``'s ``client.responses.create``: the declared floor
(openai>=1.40) predates ``responses`` (added in openai 1.66.0, 2025-03-11), and — the deciding reason —
the SDK's httpx transport cannot carry the wall-clock deadline every call has here (``deadline.py`` cuts
urllib3 sockets; httpx's timeouts are per socket operation, so a peer that drips bytes holds the worker).
So this client posts over the same deadline-aware session as the native client (``calls.make_session``),
behind the same breaker, limiter, charged retries and refund (``calls.py``), and maps errors with the same
table (``errors.classify_body``: 429 ``Throttling*`` retried, 400 ``InvalidParameter`` and 404
``model_not_found`` permanent). The key is sent only in the Authorization header and redacted from every
message. That the official SDK works against the same route is shown on the emulator's side.
No Airflow import.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from airflow_provider_qwenocr.dashscope import deadline as _deadline
from airflow_provider_qwenocr.dashscope.breaker import CircuitBreaker
from airflow_provider_qwenocr.dashscope.calls import (
    deadline_exceeded,
    guarded,
    make_session,
    run_with_retries,
    settle,
    text_tokens,
)
from airflow_provider_qwenocr.dashscope.config import ClientConfig
from airflow_provider_qwenocr.dashscope.errors import (
    PermanentError,
    classify,
    classify_body,
    from_exception,
)
from airflow_provider_qwenocr.dashscope.limits import RateLimiter
from airflow_provider_qwenocr.dashscope.realtime import DEFAULT_OUTPUT_ALLOWANCE, DEFAULT_POOL_SIZE, URL_IMAGE_TOKENS
from airflow_provider_qwenocr.dashscope.uploads import OSS_RESOLVE_HEADER, temporary_upload
from airflow_provider_qwenocr.ocr.images import PreparedImage, sha256_hex
from airflow_provider_qwenocr.ocr.layouts import DocumentResult, split_pages
from airflow_provider_qwenocr.ocr.models import MAX_PDF_PAGES, NATIVE_API
from airflow_provider_qwenocr.ocr.parsing import content_text, parse_answer
from airflow_provider_qwenocr.ocr.plan import Identity, payload_identity
from airflow_provider_qwenocr.ocr.request import REMOTE_PREFIXES, OcrRequest, build_ocr_request
from airflow_provider_qwenocr.ocr.results import OcrResult, Usage, idempotency_key
from airflow_provider_qwenocr.ocr.tasks import OcrTask, ocr_options

log = logging.getLogger(__name__)

RESPONSES_PATH = "/responses"  # under the compatible-mode base


@dataclass(frozen=True)
class FileInput:
    """A document the service fetches itself (``input_file``): an http(s) URL or an ``oss://`` upload.

    ``pages`` (when known) sizes the rate-limiter charge; unknown, a full 50-page file is charged and the
    unused part refunded when the answer's usage arrives (an estimate must not undercount).
    """

    url: str
    pages: int | None = None


#: One input of a document: a prepared image, an image URL (``http(s)``/``oss``/``data:``), a document URL.
DocumentInput = PreparedImage | str | FileInput


def _finish_reason(body: dict) -> str | None:
    status = body.get("status")
    if status == "completed":
        return "stop"
    if status == "incomplete":
        reason = (body.get("incomplete_details") or {}).get("reason")
        return "length" if reason in (None, "max_output_tokens") else str(reason)
    return None if status is None else str(status)


def answer_content(body: dict) -> tuple[str | None, dict | None]:
    """(text, ocr_result) of a Responses answer: the assistant message's content parts."""
    for item in body.get("output") or []:
        if isinstance(item, dict) and item.get("type", "message") == "message":
            return content_text(item.get("content"))
    return None, None


class ResponsesClient:
    """One connection's Responses API client. Thread-safe: share it across worker threads.

    Parameters as :class:`~.realtime.RealtimeClient` (config, limiter, output allowance, pool size, sleep,
    breaker); every HTTP attempt has the wall-clock deadline ``config.timeout``.
    """

    def __init__(self, config: ClientConfig, *, limiter: RateLimiter | None = None,
                 output_allowance: int = DEFAULT_OUTPUT_ALLOWANCE, pool_size: int = DEFAULT_POOL_SIZE,
                 sleep: Callable[[float], Any] = time.sleep, breaker: CircuitBreaker | None = None) -> None:
        self.config = config
        self.limiter = limiter
        self.output_allowance = output_allowance
        self.breaker = breaker if breaker is not None else CircuitBreaker()
        self._sleep = self.breaker.sleep if sleep is time.sleep else sleep
        self._session = make_session(pool_size)
        self.url = config.compatible_base + RESPONSES_PATH
        self.calls = 0  # HTTP attempts (approximate under threads)

    def __repr__(self) -> str:  # never the key
        return f"ResponsesClient(url={self.url!r}, limiter={self.limiter!r})"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> ResponsesClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- request shape -------------------------------------------------------------------------------------

    def build_body(self, inputs: Sequence[DocumentInput], request: OcrRequest, *, prompt: str | None = None,
                   max_output_tokens: int | None = None) -> dict[str, Any]:
        """The request body: one user message, the inputs in page order, then the prompt as ``input_text``.

        A custom task sends its prompt; a built-in task sends ``ocr_options`` and, when ``prompt`` is given
        (a model that combines them), that prompt too.
        """
        content: list[dict[str, Any]] = []
        for item in inputs:
            if isinstance(item, FileInput):
                content.append({"type": "input_file", "file_url": item.url})
                continue
            part: dict[str, Any] = {"type": "input_image",
                                    "image_url": item.data_url if isinstance(item, PreparedImage) else str(item)}
            if request.min_pixels is not None:
                part["min_pixels"] = int(request.min_pixels)
            if request.max_pixels is not None:
                part["max_pixels"] = int(request.max_pixels)
            content.append(part)
        body: dict[str, Any] = {"model": request.model}
        text = request.prompt if request.task is OcrTask.CUSTOM else prompt
        if request.task is not OcrTask.CUSTOM:
            body["ocr_options"] = ocr_options(request.task, request.result_schema)
        if text:
            content.append({"type": "input_text", "text": text})
        body["input"] = [{"role": "user", "content": content}]
        if max_output_tokens is not None:
            body["max_output_tokens"] = int(max_output_tokens)
        return body

    # -- one HTTP attempt ----------------------------------------------------------------------------------

    def _http(self, body: dict[str, Any]) -> tuple[dict, dict]:
        """One POST under the wall-clock deadline: (answer, headers), or a typed error for anything else."""
        key, limit = self.config.api_key, self.config.timeout
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        if self.config.workspace_id:
            headers["X-DashScope-WorkSpace"] = self.config.workspace_id
        if any(str(p.get("image_url") or p.get("file_url") or "").startswith("oss://")
               for m in body["input"] for p in m["content"]):
            headers[OSS_RESOLVE_HEADER] = "enable"
        self.calls += 1
        try:
            with _deadline.Deadline(limit) as dl:
                response = self._session.post(self.url, json=body, headers=headers, timeout=limit)
                raw = response.content
        except Exception as exc:
            if dl.expired:
                raise deadline_exceeded(limit) from None
            raise from_exception(exc, secret=key) from None
        if response.status_code != 200:
            raise classify_body(response.status_code, raw, headers=response.headers, secret=key)
        try:
            answer = response.json()
        except ValueError:
            raise classify(200, "InvalidResponse", "the answer is not JSON", secret=key) from None
        if not isinstance(answer, dict):
            raise classify(200, "InvalidResponse", "the answer is not a JSON object", secret=key)
        if answer.get("status") == "failed" or answer.get("error"):
            raise classify_body(200, {"error": answer.get("error") or {"code": "ResponseFailed"}},
                                headers=response.headers, secret=key, answered=True)
        return answer, dict(response.headers)

    def call(self, body: dict[str, Any], *, tokens: int = 0) -> tuple[dict, dict]:
        """One request with the client policy (``calls.py``): (answer, headers) or the last typed error."""
        answer, headers = run_with_retries(
            lambda charge: guarded(lambda: self._http(body), breaker=self.breaker, limiter=self.limiter,
                                   tokens=tokens, charge=charge),
            max_retries=self.config.max_retries, max_retry_seconds=self.config.max_retry_seconds, sleep=self._sleep)
        settle(self.limiter, tokens, answer.get("usage"))
        return answer, headers

    def upload(self, path: str | os.PathLike, *, model: str | None = None) -> str:
        """A local file's ``oss://`` URL through the service's temporary upload (valid 48 h; ``uploads.py``)."""
        return temporary_upload(self.config, path, model=model or self.config.default_model, breaker=self.breaker,
                                sleep=self._sleep)

    # -- public API ----------------------------------------------------------------------------------------

    def _inputs(self, inputs: Sequence[DocumentInput | os.PathLike], request: OcrRequest) -> list[DocumentInput]:
        """Local paths made sendable: a PDF is uploaded (``input_file``), an image is prepared (``input_image``)."""
        out: list[DocumentInput] = []
        for item in inputs:
            if isinstance(item, (PreparedImage, FileInput)):
                out.append(item)
                continue
            name = os.fspath(item)
            if name.startswith(REMOTE_PREFIXES):
                out.append(FileInput(name) if name.lower().split("?", 1)[0].endswith(".pdf") else name)
            elif name.lower().endswith(".pdf"):
                out.append(FileInput(self.upload(name, model=request.model)))
            else:
                out.append(request.payload(name)[0])
        return out

    def recognize_document(self, inputs: Sequence[DocumentInput | os.PathLike], *, request: OcrRequest | None = None,
                           prompt: str | None = None, source: str | None = None,
                           max_output_tokens: int | None = None, **arguments: Any) -> DocumentResult:
        """OCR one document — several inputs are its pages in order — in ONE request.

        ``inputs``: prepared images, image URLs, :class:`FileInput` documents, or local paths (a ``.pdf`` is
        sent through the temporary upload, an image is prepared). ``request`` (or ``arguments`` for
        ``build_ocr_request``) says task, schema, model, pixel bounds. ``prompt``: with a built-in task (other
        than the default ``text_recognition``) it is combined with the task; otherwise it is a custom prompt. Raises :class:`PermanentError` for a model the Responses API does not serve, a PDF
        over 50 pages, or a bad argument, before any request.
        """
        if request is None:
            task = OcrTask.parse(arguments.get("task") or OcrTask.TEXT_RECOGNITION)
            if task in (OcrTask.TEXT_RECOGNITION, OcrTask.CUSTOM):  # the prompt IS the request: custom
                arguments["prompt"], prompt = prompt, None
            try:
                request = build_ocr_request(default_model=self.config.default_model, **arguments)
            except ValueError as exc:
                raise PermanentError(str(exc), code="InvalidParameter") from None
        elif arguments:
            raise TypeError(f"recognize_document() takes a request or its arguments, not both: {sorted(arguments)}")
        spec = request.spec
        if spec.known and spec.api == NATIVE_API:
            raise PermanentError(f"model {spec.name!r} is not served by the Responses API (qwen3.5-ocr and later "
                                 "only): use the native RealtimeClient", code="InvalidParameter")
        if prompt and request.task is not OcrTask.CUSTOM and not spec.combines_prompt and spec.known:
            raise PermanentError(f"model {spec.name!r} does not combine a task with a prompt",
                                 code="InvalidParameter")
        if request.enable_rotate:
            log.warning("enable_rotate is not documented for the Responses API; not sent")
        sendable = self._inputs(inputs, request)
        if not sendable:
            raise PermanentError("a document needs at least one input", code="InvalidParameter")
        limit = spec.max_pdf_pages or MAX_PDF_PAGES
        for item in sendable:
            if isinstance(item, FileInput) and item.pages is not None and item.pages > limit:
                raise PermanentError(f"{item.url}: {item.pages} pages; the service takes at most {limit} per file "
                                     "(split it)", code="InvalidParameter")
        body = self.build_body(sendable, request, prompt=prompt, max_output_tokens=max_output_tokens)
        pages = sum(1 if not isinstance(i, FileInput) else (i.pages or limit) for i in sendable)
        tokens = (sum(i.tokens if isinstance(i, PreparedImage) else URL_IMAGE_TOKENS for i in sendable
                      if not isinstance(i, FileInput))
                  + sum((i.pages or limit) * URL_IMAGE_TOKENS for i in sendable if isinstance(i, FileInput))
                  + text_tokens(prompt or request.prompt) + self.output_allowance * pages)
        answer, headers = self.call(body, tokens=tokens)
        return self._to_result(answer, headers, sendable, request, prompt=prompt, source=source)

    def recognize(self, image: DocumentInput | os.PathLike, *, identity: Identity | None = None,
                  **kwargs: Any) -> OcrResult:
        """One image or document; its document result (see :meth:`recognize_document` for the pages).

        ``identity`` (the run's plan, ``ocr.plan``) names the row as :meth:`RealtimeClient.recognize` does, so
        the page-by-page loop (``runs/realtime.py``) runs on this client unchanged: one page, one row."""
        result = self.recognize_document([image], **kwargs).document
        if identity is None:
            return result
        return replace(result, pages=None, **identity.fields())

    def _to_result(self, answer: dict, headers: dict, inputs: list[DocumentInput], request: OcrRequest, *,
                   prompt: str | None, source: str | None) -> DocumentResult:
        # each input's fingerprint by the plan's rules: its bytes, else its reference key (ocr/plan.py)
        idents = [payload_identity(i.url if isinstance(i, FileInput) else i, request) for i in inputs]
        shas = [ident.sha256 or ident.key for ident in idents]
        sha = shas[0] if len(shas) == 1 else sha256_hex("\n".join(shas).encode())
        key = request.key(sha)
        if prompt and request.task is not OcrTask.CUSTOM:  # the combined prompt is part of what was asked
            key = idempotency_key(key, request.task.value, request.model, {"combined_prompt": prompt})
        single = inputs[0] if len(inputs) == 1 else None
        if source is None:
            ref = single.url if isinstance(single, FileInput) else single if isinstance(single, str) else None
            source = ref if ref and not ref.startswith("data:") else f"sha256:{sha}"
        prepared = single if isinstance(single, PreparedImage) else None
        text, ocr = answer_content(answer)
        size = (prepared.width, prepared.height) if prepared else None
        parsed = parse_answer(request.task, text, ocr, scale_x=prepared.scale_x if prepared else 1.0,
                              scale_y=prepared.scale_y if prepared else 1.0,
                              text_box_size=size if size and request.spec.normalized_text_boxes else None)
        usage = Usage.from_api(answer.get("usage"))
        lower = {k.lower(): v for k, v in headers.items()}
        document = OcrResult(
            source=source, task=request.task.value, model=request.model, status="ok", sha256=sha, key=key,
            text=parsed.text, kv=parsed.kv, words=parsed.words, html=parsed.html, latex=parsed.latex, usage=usage,
            cost=self.config.price_of(request.spec).cost(usage.input_tokens, usage.output_tokens),
            request_id=answer.get("request_id") or lower.get("x-request-id") or answer.get("id") or None,
            width=size[0] if size else None, height=size[1] if size else None,
            finish_reason=_finish_reason(answer), page=None,
        )
        known_pages = sum(1 if not isinstance(i, FileInput) else (i.pages or 0) for i in inputs)
        return split_pages(document, (ocr or {}).get("layouts"), pages=known_pages)


__all__ = ["ResponsesClient", "FileInput", "DocumentInput", "DocumentResult", "answer_content"]
