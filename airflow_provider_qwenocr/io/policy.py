"""The one failure policy of every OCR task, realtime or batch: ``max_failed_ratio`` (default 0).

Why one rule: a folder with two bad images must fail the same way whether it went through the realtime
operator, the batch operator or the batch sensor. A *failed image* is any image that has an error row:
refused before it was sent (undecodable, too small …), refused by the service, retries exhausted, and
for batches also a request whose batch expired, failed or was cancelled before it ran. The task fails
when failed / all images exceeds ``max_failed_ratio``; its results (with the error rows) are still
written first, because the successful rows were paid for.

``fail_on_partial_error`` (the batch operator's and sensor's old switch) keeps working for one release:
True means ``max_failed_ratio=0``, False means ``max_failed_ratio=1`` (any partial outcome passes), with a
DeprecationWarning.
"""

from __future__ import annotations

from airflow_provider_qwenocr.deprecation import warn_deprecated

DEFAULT_MAX_FAILED_RATIO = 0.0


def resolve_max_failed_ratio(max_failed_ratio: float | None, fail_on_partial_error: bool | None = None,
                             *, owner: str = "the operator") -> float:
    """The effective ratio from the new argument and the deprecated one (the new one wins when both are set)."""
    if fail_on_partial_error is not None:
        warn_deprecated(
            f"fail_on_partial_error is deprecated for {owner}: use max_failed_ratio (0 = any failed image fails "
            f"the task, the default; 1 = never). fail_on_partial_error={fail_on_partial_error!r} now means "
            f"max_failed_ratio={0.0 if fail_on_partial_error else 1.0}.",
            stacklevel=2,
        )
        if max_failed_ratio is None:
            max_failed_ratio = 0.0 if fail_on_partial_error else 1.0
    ratio = DEFAULT_MAX_FAILED_RATIO if max_failed_ratio is None else float(max_failed_ratio)
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"max_failed_ratio must be between 0 and 1, not {max_failed_ratio!r}")
    return ratio


def failed_ratio_exceeded(n_failed: int, n_images: int, max_failed_ratio: float) -> str | None:
    """The failure message when too many images failed, else None."""
    if not n_images or n_failed <= 0:
        return None
    ratio = n_failed / n_images
    if ratio <= max_failed_ratio:
        return None
    return (f"{n_failed} of {n_images} images failed ({ratio:.1%} > max_failed_ratio {max_failed_ratio:.1%})")
