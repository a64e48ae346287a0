"""Logging filters named in `settings.LOGGING`."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied


class RefusalWithoutTraceback(logging.Filter):
    """Django logs every PermissionDenied with its traceback ("Forbidden (Permission denied): /path"
    and the stack of the view that refused). A refusal is an expected answer, not a failure: the line
    stays, the traceback goes, so the log shows real errors' tracebacks and no one else's."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], PermissionDenied):
            record.exc_info = None
            record.exc_text = None
        return True
