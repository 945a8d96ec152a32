"""Batch API methods of the hook, and the batch policy shared by the batch operator, sensor and trigger.

(Skeleton: filled in by the batch work, issue #3.) ``BatchHookMixin`` is mixed into ``QwenOcrHook`` and
reads ``self.config`` (a :class:`~airflow_provider_qwenocr.dashscope.config.ClientConfig`).
"""

from __future__ import annotations


class BatchHookMixin:
    pass
