"""QwenOcrHook: DashScope credentials as an Airflow connection, and realtime OCR calls.

(Skeleton: the realtime methods are filled in by issue #2; batch methods come from BatchHookMixin.)
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow_provider_qwenocr._compat import BaseHook
from airflow_provider_qwenocr.dashscope.config import ClientConfig, normalise_root
from airflow_provider_qwenocr.get_provider_info import CONN_TYPE, DEFAULT_CONN_ID, UI_FIELD_BEHAVIOUR
from airflow_provider_qwenocr.hooks.batch import BatchHookMixin


class QwenOcrHook(BatchHookMixin, BaseHook):
    """Talks to Alibaba Model Studio (DashScope) with the key and endpoint of an Airflow connection.

    :param conn_id: connection of type ``dashscope`` (password = API key, host = optional base URL root).
    """

    conn_name_attr = "conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "DashScope (Qwen-VL-OCR)"

    def __init__(self, conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return UI_FIELD_BEHAVIOUR

    @cached_property
    def config(self) -> ClientConfig:
        conn = self.get_connection(self.conn_id)
        extra = conn.extra_dejson or {}

        def _num(key: str, cast):
            value = extra.get(key)
            return None if value in (None, "") else cast(value)

        return ClientConfig(
            api_key=conn.password or extra.get("api_key") or "",
            base_url=normalise_root(conn.host),
            region=extra.get("region") or "cn-beijing",
            workspace_id=extra.get("workspace_id") or None,
            default_model=extra.get("default_model") or "qwen-vl-ocr",
            timeout=_num("timeout", float) or 120.0,
            rpm=_num("rpm", int),
            tpm=_num("tpm", int),
        )
