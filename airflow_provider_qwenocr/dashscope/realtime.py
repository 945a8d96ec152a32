"""Realtime OCR calls over the official dashscope SDK (native multimodal-generation API).

Why the native API: the built-in tasks (``parameters.ocr_options``) and ``enable_rotate`` exist only there,
and only there does the answer carry ``ocr_result`` (``words_info`` boxes on the image the service
received, ``kv_result`` already parsed).

Why the base URL goes in every call: ``dashscope.base_http_api_url`` is a module global, so two
connections in one worker (or two hooks in two threads) would clobber each other. The SDK's request
builder takes ``base_address`` per call; we pass it, and never touch the global. Each client also
owns its own ``requests.Session`` (pool sized for its concurrency), so connections are reused and never
shared with another connection's host.

One image per call: prepare (elsewhere) → wait for the rate limiter → call → classify errors → retry
the transient ones (tenacity) → typed :class:`~airflow_provider_qwenocr.ocr.results.OcrResult`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from airflow_provider_qwenocr.dashscope import deadline as _deadline
from airflow_provider_qwenocr.dashscope.breaker import CircuitBreaker
from airflow_provider_qwenocr.dashscope.calls import (
    QUOTA_THROTTLING_CODES,
    charges_retry,
    guarded,
    make_session,
    run_with_retries,
    settle,
)
from airflow_provider_qwenocr.dashscope.calls import text_tokens as _text_tokens
from airflow_provider_qwenocr.dashscope.config import ClientConfig
from airflow_provider_qwenocr.dashscope.errors import (
    PermanentError,
    QwenOcrError,
    RetryableError,
    classify,
    documented_status,
    from_exception,
)
from airflow_provider_qwenocr.dashscope.limits import RateLimiter
from airflow_provider_qwenocr.ocr.images import PreparedImage
from airflow_provider_qwenocr.ocr.models import ModelSpec
from airflow_provider_qwenocr.ocr.parsing import content_text, parse_answer
from airflow_provider_qwenocr.ocr.plan import Identity, payload_identity
from airflow_provider_qwenocr.ocr.request import OcrRequest, build_ocr_request, request_key
from airflow_provider_qwenocr.ocr.results import OcrResult, Usage
from airflow_provider_qwenocr.ocr.tasks import OcrTask, ocr_options, prompt_for

log = logging.getLogger(__name__)

#: Output tokens reserved in the TPM budget per call (OCR answers are short; a dense page is ~1–2K).
DEFAULT_OUTPUT_ALLOWANCE = 512
#: Token estimate for an image sent by URL (we never see its pixels): about a 1.5-MP page at 32-px patches.
URL_IMAGE_TOKENS = 1500
DEFAULT_POOL_SIZE = 64


def response_error(response: Any, *, secret: str | None = None) -> QwenOcrError | None:
    """The typed error one SDK response stands for, or None when it is an answer.

    Covers the plain response of a failed call (``status_code != 200``, ``code``/``message`` set, no
    raise) and each response of a streamed call: there an ``event:error`` frame arrives inside an HTTP 200
    stream, and the SDK reports it with status 400 whatever the frame's ``:HTTP_STATUS/…`` line said (it
    reads only ``status:`` lines). The code still names the status: every ``Throttling*`` code is a 429
    in the service's table, so such a frame is restored to 429 — retried (and charged, :func:`charges_retry`)
    like the same 429 outside a stream; an account-state frame (``PrepaidBillOverdue`` …) gets its
    documented status and maps to :class:`AccountError`.
    """
    status = getattr(response, "status_code", None)
    code = getattr(response, "code", None) or None
    if status == 200 and not code:
        return None
    documented = documented_status(str(code)) if code else None
    if documented is not None and status in (200, 400):
        status = documented
    return classify(
        status,
        code,
        getattr(response, "message", None),
        request_id=getattr(response, "request_id", None),
        headers=getattr(response, "headers", None),
        secret=secret,
    )


def _sdk():
    """The SDK's ``MultiModalConversation``, imported on first use (importing the provider stays cheap).

    Called before the rate limiter is waited on: the import takes ~1 s of CPU here (seconds when a dozen
    task processes start on two cores), and a call granted before it reaches the service that much late.
    On the 3-worker cluster the shared limiter's grants were paced to the millisecond (measured: 1.017 s
    apart, 12 processes) while the service's 60-s window saw 60 calls in 47 s a minute into the run
    (Retry-After 13 s): early grants arrived late, in a bunch. This import was one such delay after the grant.
    """
    from dashscope import MultiModalConversation

    return MultiModalConversation


class RealtimeClient:
    """One DashScope connection's realtime OCR client. Thread-safe: share it across worker threads.

    :param config: key, endpoint, region, timeouts and retry bounds.
    :param limiter: the RPM/TPM limiter every call waits on (None = no client-side limit).
    :param output_allowance: output tokens reserved per call in the TPM budget.
    :param pool_size: HTTP connections kept per host (≥ the number of threads calling ``recognize``).
    :param sleep: the retry sleep (tests pass a no-op).
    :param breaker: the circuit breaker shared by every call of this client (default: 8 consecutive
        outage signals or 120 s without a healthy answer; see ``dashscope/breaker.py``).

    Every HTTP attempt has a wall-clock deadline of ``config.timeout`` seconds for connect + send + the
    whole response (``dashscope/deadline.py``), so a peer that drips bytes cannot hold a worker.
    """

    def __init__(
        self,
        config: ClientConfig,
        *,
        limiter: RateLimiter | None = None,
        output_allowance: int = DEFAULT_OUTPUT_ALLOWANCE,
        pool_size: int = DEFAULT_POOL_SIZE,
        sleep: Callable[[float], Any] = time.sleep,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.config = config
        self.limiter = limiter
        self.output_allowance = output_allowance
        self.breaker = breaker if breaker is not None else CircuitBreaker()
        # a back-off ends early when the breaker opens (tests that pass their own sleep keep it)
        self._sleep = self.breaker.sleep if sleep is time.sleep else sleep
        self._session = self._make_session(pool_size)
        self.calls = 0  # HTTP attempts, for progress and tests (approximate under threads)
        # The SDK now, on the caller's thread, before any image is prepared. Started by the first call (after
        # the first prepare) or in a thread beside the preparing threads, its ~0.6 s of CPU took 1.5–4.7 s
        # of wall on a busy host, and a task's first call waited for it; imported here it took 0.5–0.6 s and
        # the first call went at 0.7–1.9 s instead of 1.5–4.7 s (bench/fullres.py, load 4–12: RESULTS.md).
        _sdk()

    def __repr__(self) -> str:  # never the key
        return f"RealtimeClient(base={self.config.native_base!r}, limiter={self.limiter!r})"

    @staticmethod
    def _make_session(pool_size: int):
        return make_session(pool_size)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> RealtimeClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- request shape -------------------------------------------------------------------------------

    def build_request(
        self,
        image_url: str,
        spec: ModelSpec,
        *,
        task: OcrTask,
        prompt: str | None,
        result_schema: dict | None,
        enable_rotate: bool,
        min_pixels: int | None,
        max_pixels: int | None,
    ) -> tuple[list[dict], dict | None]:
        """(messages, ocr_options) as the recordings show: pixel bounds and rotation on the image item,
        ``ocr_options`` for built-in tasks, a text item for custom prompts (and for snapshots without
        built-in tasks, which get the task's fixed prompt)."""
        item: dict[str, Any] = {"image": image_url}
        if min_pixels is not None:
            item["min_pixels"] = int(min_pixels)
        if max_pixels is not None:
            item["max_pixels"] = int(max_pixels)
        if enable_rotate:
            item["enable_rotate"] = True
        content: list[dict] = [item]
        options = None
        if task is OcrTask.CUSTOM:
            content.append({"text": prompt_for(task, prompt=prompt)})
        elif spec.builtin_tasks:
            options = ocr_options(task, result_schema)
        else:
            content.append({"text": prompt_for(task, result_schema=result_schema)})
        return [{"role": "user", "content": content}], options

    # -- one HTTP attempt ----------------------------------------------------------------------------

    def _call_once(self, model: str, messages: list[dict], options: dict | None, tokens: int, *, charge: bool = True):
        # _sdk before the limiter: a grant must not wait out the SDK's first import (seconds on a busy host)
        return guarded(lambda: self._http(model, messages, options), breaker=self.breaker, limiter=self.limiter,
                       tokens=tokens, charge=charge, before=_sdk)

    def _http(self, model: str, messages: list[dict], options: dict | None):
        """One HTTP attempt under the wall-clock deadline; a typed error for anything but a 200."""
        MultiModalConversation = _sdk()
        kwargs: dict[str, Any] = {
            "base_address": self.config.native_base,
            "request_timeout": self.config.timeout,
            "session": self._session,
        }
        if options is not None:
            kwargs["ocr_options"] = options
        if self.config.workspace_id:
            kwargs["workspace"] = self.config.workspace_id
        self.calls += 1
        key = self.config.api_key
        limit = self.config.timeout
        try:
            with _deadline.Deadline(limit) as dl:
                response = MultiModalConversation.call(model=model, messages=messages, api_key=key, **kwargs)
        except _deadline.ResponseTooLarge as exc:  # the same answer again would be as large: not retried
            raise PermanentError(str(exc), code="ResponseTooLarge", status_code=200) from None
        except Exception as exc:  # transport or SDK client-side failure
            if dl.expired:
                raise RetryableError(f"no complete response within the {limit:g} s deadline "
                                     "(connect + send + response)", code="RequestTimeOut") from None
            raise from_exception(exc, secret=key) from None
        if dl.expired:  # an answer without Content-Length ends at the cut: what arrived looks complete
            raise RetryableError(f"no complete response within the {limit:g} s deadline "
                                 "(connect + send + response)", code="RequestTimeOut")
        error = response_error(response, secret=key)
        if error is not None:
            raise error
        return response

    def call(self, model: str, messages: list[dict], options: dict | None = None, *, tokens: int = 0):
        """One request with retries: the SDK response, or the last typed error raised. Which retries wait
        for the rate limiter again: ``calls.run_with_retries``."""
        response = run_with_retries(
            lambda charge: self._call_once(model, messages, options, tokens, charge=charge),
            max_retries=self.config.max_retries, max_retry_seconds=self.config.max_retry_seconds, sleep=self._sleep)
        self._settle(tokens, response)
        return response

    def _settle(self, tokens: int, response: Any) -> None:
        settle(self.limiter, tokens, getattr(response, "usage", None))

    # -- public API ----------------------------------------------------------------------------------

    def recognize(self, image: PreparedImage | str, *, request: OcrRequest | None = None, source: str | None = None,
                  identity: Identity | None = None, **arguments: Any) -> OcrResult:
        """OCR one image: a :class:`PreparedImage` (preferred: resized to the grid, boxes mapped back), a local
        path (prepared here), or a URL string (``https://``, ``oss://`` or ``data:``) passed untouched.

        ``request`` is the run's :class:`~airflow_provider_qwenocr.ocr.request.OcrRequest`; without it,
        ``arguments`` (``task``, ``prompt``, ``result_schema``, ``model``, ``min_pixels``, ``max_pixels``,
        ``enable_rotate``) build one by the same rules (``ocr.request.build_ocr_request``). Returns the
        finished ``ok`` row: ``identity`` (from the run's plan, ``ocr.plan``: source, sha256, key, page) or,
        without one, the payload's own (``ocr.plan.payload_identity``), its usage, and its cost at the model's
        price in the connection's region — callers do not rewrite it. Raises :class:`PermanentError` (incl. ``InvalidApiKeyError``, and ``InvalidParameter`` for a
        bad argument) at once and :class:`RetryableError` when retries are exhausted.
        """
        if request is None:
            try:
                request = build_ocr_request(default_model=self.config.default_model, **arguments)
            except ValueError as exc:
                raise PermanentError(str(exc), code="InvalidParameter") from None
        elif arguments:
            raise TypeError(f"recognize() takes a request or its arguments, not both: {sorted(arguments)}")
        if isinstance(image, str):  # a local path is read and prepared; a URL goes untouched (request.payload)
            image, named = request.payload(image)
            source = source or named
        if isinstance(image, PreparedImage):
            url, img_tokens = image.data_url, image.tokens
            scale, size = (image.scale_x, image.scale_y), (image.width, image.height)
        else:
            url, img_tokens, scale, size = str(image), URL_IMAGE_TOKENS, (1.0, 1.0), (None, None)
        if identity is None:
            identity = payload_identity(image, request, source)
        messages, options = self.build_request(
            url, request.spec, task=request.task, prompt=request.prompt, result_schema=request.result_schema,
            enable_rotate=request.enable_rotate, min_pixels=request.min_pixels, max_pixels=request.max_pixels,
        )
        tokens = img_tokens + _text_tokens(request.text) + self.output_allowance
        response = self.call(request.model, messages, options, tokens=tokens)
        return self._to_result(response, identity, task=request.task, model=request.model, spec=request.spec,
                               scale=scale, size=size)

    def recognize_images(self, images: list[PreparedImage], *, request: OcrRequest, identity: Identity) -> OcrResult:
        """OCR several page images of one document in ONE request (reference §10: the documented way to send
        a multi-page document to the pre-3.5 models): one ``image`` item per page, in order, in one user
        message; one answer for all of them (key information extraction: one ``kv_result``). Boxes are per
        image, so a multi-image answer carries no ``words``; ``width``/``height`` stay unset."""
        if len(images) == 1:
            return self.recognize(images[0], request=request, identity=identity)
        messages, options = self.build_request(
            images[0].data_url, request.spec, task=request.task, prompt=request.prompt,
            result_schema=request.result_schema, enable_rotate=request.enable_rotate,
            min_pixels=request.min_pixels, max_pixels=request.max_pixels)
        content = messages[0]["content"]
        first = content[0]
        content[1:1] = [{**first, "image": image.data_url} for image in images[1:]]
        tokens = sum(i.tokens for i in images) + _text_tokens(request.text) + self.output_allowance * len(images)
        response = self.call(request.model, messages, options, tokens=tokens)
        result = self._to_result(response, identity, task=request.task, model=request.model, spec=request.spec,
                                 scale=(1.0, 1.0), size=(None, None))
        result.words = None
        return result

    def _to_result(self, response, identity: Identity, *, task, model, spec, scale, size) -> OcrResult:
        output = getattr(response, "output", None) or {}
        choices = output.get("choices") or []
        if not choices:
            raise PermanentError("response has no choices", code="EmptyResponse",
                                 status_code=200, request_id=getattr(response, "request_id", None))
        choice = choices[0]
        message = choice.get("message") or {}
        text, ocr = content_text(message.get("content"))
        parsed = parse_answer(task, text, ocr, scale_x=scale[0], scale_y=scale[1])
        usage = Usage.from_api(dict(getattr(response, "usage", None) or {}))
        cost = self.config.price_of(spec).cost(usage.input_tokens, usage.output_tokens)
        return OcrResult(
            **identity.fields(),
            task=task.value,
            model=model,
            status="ok",
            text=parsed.text,
            kv=parsed.kv,
            words=parsed.words,
            html=parsed.html,
            latex=parsed.latex,
            usage=usage,
            cost=cost,
            request_id=getattr(response, "request_id", None) or None,
            width=size[0],
            height=size[1],
            finish_reason=choice.get("finish_reason"),
        )


__all__ = ["RealtimeClient", "request_key", "response_error", "charges_retry", "QUOTA_THROTTLING_CODES", "QwenOcrError"]
