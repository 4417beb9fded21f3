"""Log output: the classic text line, or one JSON object per line (``log_format = "json"``) for log shippers.

A log line is one record: in the text format every control character of a record's line (a newline, a
carriage return, ESC and the rest of C0 and C1, DEL, the Unicode line and paragraph separators) is written
as an escape such as ``\\x0a``, so that client-supplied text (a request path, a header quoted in an error)
can neither forge a line nor send escape sequences to the operator's terminal. A traceback keeps its lines,
each indented (only a record's own line starts at the first column, so an exception's message cannot pass
for one) and cleared of every other control character. JSON lines are escaped by the JSON encoder.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# what every LogRecord has: the rest of its attributes came from ``extra=`` and are shown as keys
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_BUT_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """``text`` with every control character written as an escape (a no-op, and cheap, for plain text)."""
    return _CONTROL.sub(_escape, text) if _CONTROL.search(text) else text


class TextFormatter(logging.Formatter):
    """The text line with control characters escaped (see the module docstring)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802  # logging's name
        return escape_controls(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:  # noqa: N802
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802
        return _indented(stack_info)


def _indented(text: str) -> str:
    return "\n".join("  " + line for line in _CONTROL_BUT_NEWLINE.sub(_escape, text).split("\n"))


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...extra fields, "exception"?}``, one line per record."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(out, default=str).decode()


def setup_logging(level: str, log_format: str = "text") -> None:
    """Log every record at ``level`` and above to stderr, as text or as JSON lines (then warnings too)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter(TEXT_FORMAT))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler])
    # httpx logs every request's URL at info: the IPFS node's URL may carry a secret in its query
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    if log_format == "json":
        logging.captureWarnings(True)  # Python warnings as records too ("py.warnings"), not bare stderr lines
