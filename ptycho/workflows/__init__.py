"""Workflows of the Ptychodus 1.7 compatibility facade (`ptycho.workflows.components`).

`reports_errors` marks the facade functions Ptychodus calls with user data: their errors are also
logged, as one line, on the `ptychopinn` logger. Ptychodus forwards the child's log records to the
parent and shows those of the library logger `ptychopinn` in its processing log, so a GUI user sees
why a run failed; the exception itself still propagates (Ptychodus re-raises it as a ChildError).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import ParamSpec, TypeVar

logger = logging.getLogger("ptychopinn")

_P = ParamSpec("_P")
_R = TypeVar("_R")


def reports_errors(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """Log any exception of `func` as 'TypeName: message' on the `ptychopinn` logger, then re-raise."""

    @functools.wraps(func)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            logger.error("%s: %s", type(exc).__name__, exc)
            raise

    return wrapper
