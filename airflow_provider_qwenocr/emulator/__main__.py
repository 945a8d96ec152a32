"""Deprecated: ``python -m airflow_provider_qwenocr.emulator`` runs ``qwenocr-emulator`` with the same flags."""

from __future__ import annotations

import sys

from airflow_provider_qwenocr.deprecation import warn_deprecated
from airflow_provider_qwenocr.emulator import MOVED, _new_package


def main(argv: list[str] | None = None) -> int:
    warn_deprecated(MOVED, stacklevel=1)
    print(f"DeprecationWarning: {MOVED}", file=sys.stderr, flush=True)
    _new_package()
    from qwenocr_emulator.__main__ import main as run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
