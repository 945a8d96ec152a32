"""The arguments both OCR operators share, stored and templated once, and where they become an ``OcrRequest``.

Why a base operator (not a plain mixin): Airflow reads an operator's parameters from the ``__init__``
signatures of the BaseOperator classes in its MRO — ``default_args``, ``partial()``/``expand()``
validation — so the shared list must sit on a BaseOperator subclass to stay first-class. The base owns
the shared ``template_fields`` too (each operator only adds its own), so a shared argument is templated in
both operators or in neither. The request checks are ``ocr.request.build_ocr_request`` (no Airflow) and
:meth:`QwenOcrBaseOperator.ocr_request` is where their ``ValueError`` becomes ``QwenOcrConfigError``.

Each knob has one home: a per-task choice is an argument here or on the operator; a tuning knob of the
service (retries, timeouts, circuit breaker, RPM/TPM) is a connection extra; a display or poll cadence is a
module constant. Locations follow one rule (:mod:`airflow_provider_qwenocr.hooks.locations`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_qwenocr._compat import BaseOperator
from airflow_provider_qwenocr.exceptions import QwenOcrConfigError
from airflow_provider_qwenocr.get_provider_info import DEFAULT_CONN_ID
from airflow_provider_qwenocr.hooks.locations import check_location, is_template
from airflow_provider_qwenocr.lineage import OcrLineageMixin, declare_results_asset

if TYPE_CHECKING:
    from airflow_provider_qwenocr.hooks.qwenocr import QwenOcrHook
    from airflow_provider_qwenocr.ocr.request import OcrRequest


class QwenOcrBaseOperator(OcrLineageMixin, BaseOperator):
    """What ``QwenOcrOperator`` and ``QwenOcrBatchOperator`` both take (documented here once).

    :param images: a local file, directory (recursive), glob, http(s) URL, ``s3://bucket/key-or-prefix``,
        any ObjectStoragePath URI, or a list of these. PDFs become one image per page (``pdf`` extra).
    :param task: one of the seven built-in tasks (``text_recognition``, ``multi_lan``, ``table_parsing``,
        ``document_parsing``, ``formula_recognition``, ``key_information_extraction``,
        ``advanced_recognition``) or ``custom`` with ``prompt``. A prompt with the default task means
        ``custom``; with another built-in task the prompt is ignored (logged).
    :param prompt: the prompt of a ``custom`` task.
    :param result_schema: fields to extract for ``key_information_extraction`` (dict or JSON, ≤ 3 levels).
    :param model: model name; default is the connection's ``default_model`` (``qwen-vl-ocr``).
    :param min_pixels: lower pixel bound of the model's resize (default: the model's).
    :param max_pixels: upper pixel bound of the model's resize (default: the model's).
    :param output_uri: where the result rows (JSONL) go: a file, or a folder ending in ``/`` (then
        ``<task_id>[_<map_index>].jsonl`` in it). Default: ``$AIRFLOW_HOME/qwenocr/<dag_id>/<run_id>/<task_id>[_<map_index>].jsonl``.
        An absolute path or a URI; a relative path or a mistyped scheme (``s3:/bucket``) is refused.
    :param cache_uri: the per-image result cache, shared by both operators (same keys). Default:
        ``[qwenocr] cache_uri`` (``AIRFLOW__QWENOCR__CACHE_URI``), else ``$AIRFLOW_HOME/qwenocr/<dag_id>/_cache``
        — never beside a templated ``output_uri`` (see ``hooks/locations.py``).
    :param use_cache: look up and store results in the cache (default True).
    :param conn_id: the ``dashscope`` connection.
    :param aws_conn_id: AWS connection for ``s3://`` sources, outputs and caches.
    :param token_budget: refuse to start (before anything is billed) when the estimated image tokens of the
        images not yet cached exceed this.
    :param image_transport: how images reach the service. ``"inline"`` (default): files and object-store
        sources are read, resized to the model grid and sent as base64; http(s) URLs are passed to the service,
        which fetches them. ``"url"``: object-store sources go as presigned URLs (``runs/presign.py`` says what
        that trades). ``"fetch"``: http(s) URLs are downloaded here (bounded in time and bytes) and resized
        like files, instead of letting the service fetch them.
    :param max_failed_ratio: the task fails when failed images / all images exceeds this (default 0: any
        failed image fails the task); the rows, error rows included, are written first.
    :param emit_asset: declare the outlet asset ``qwenocr://<dag_id>/<task_id>`` (Dataset on 2.x), whose
        events carry ``results_uri`` and the counts (see :mod:`airflow_provider_qwenocr.lineage`).
    """

    template_fields: Sequence[str] = (
        "images", "task", "prompt", "result_schema", "model", "min_pixels", "max_pixels", "output_uri",
        "cache_uri", "conn_id", "aws_conn_id", "token_budget",
    )
    template_fields_renderers = {"result_schema": "json", "prompt": "md"}

    def __init__(
        self,
        *,
        images: Any,
        task: str = "text_recognition",
        prompt: str | None = None,
        result_schema: dict | str | None = None,
        model: str | None = None,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        output_uri: str | None = None,
        cache_uri: str | None = None,
        use_cache: bool = True,
        conn_id: str = DEFAULT_CONN_ID,
        aws_conn_id: str | None = "aws_default",
        token_budget: int | None = None,
        image_transport: str = "inline",
        max_failed_ratio: float = 0.0,
        emit_asset: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        from airflow_provider_qwenocr.ocr.tasks import OcrTask
        from airflow_provider_qwenocr.runs.presign import check_transport
        from airflow_provider_qwenocr.runs.summary import resolve_max_failed_ratio

        if isinstance(task, str) and not is_template(task):
            try:  # a typo fails when the DAG is parsed, not when the task runs
                OcrTask.parse(task)
            except ValueError as exc:
                raise QwenOcrConfigError(str(exc)) from None
        try:
            self.max_failed_ratio = resolve_max_failed_ratio(max_failed_ratio)
        except ValueError as exc:
            raise QwenOcrConfigError(str(exc)) from None
        check_location("output_uri", output_uri)  # literal values at parse time; rendered ones at run time
        check_location("cache_uri", cache_uri)

        self.images = images
        self.task = task
        self.prompt = prompt
        self.result_schema = result_schema
        self.model = model
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels
        self.output_uri = output_uri
        self.cache_uri = cache_uri
        self.use_cache = use_cache
        self.conn_id = conn_id
        self.aws_conn_id = aws_conn_id
        self.token_budget = token_budget
        self.image_transport = check_transport(image_transport)
        self.results_uri: str | None = None
        self.results_asset = declare_results_asset(self) if emit_asset else None

    @property
    def fetch(self) -> bool:
        """``image_transport="fetch"``: http(s) URLs are downloaded here, not fetched by the service."""
        return self.image_transport == "fetch"

    #: only ``QwenOcrOperator`` takes ``enable_rotate`` (the Batch API cannot rotate)
    enable_rotate = False

    @cached_property
    def hook(self) -> QwenOcrHook:
        from airflow_provider_qwenocr.hooks.qwenocr import QwenOcrHook

        return QwenOcrHook(conn_id=self.conn_id)

    def ocr_request(self) -> OcrRequest:
        """The rendered request arguments as one checked spec; any argument error is a QwenOcrConfigError here."""
        from airflow_provider_qwenocr.ocr.request import build_ocr_request

        try:
            return build_ocr_request(self.task, self.prompt, self.result_schema, self.model, self.min_pixels,
                                     self.max_pixels, self.enable_rotate, self.fetch,
                                     default_model=self.hook.config.default_model)
        except ValueError as exc:
            raise QwenOcrConfigError(str(exc)) from None
