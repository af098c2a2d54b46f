"""structlog set-up: one JSON object per line, with the request's contextvars merged in.

Logs go through a sink that looks up its stream on every write, so tests can point the
output elsewhere after loggers were created and cached.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog
import structlog.tracebacks

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class _Sink:
    """File-like object forwarding to the current stream (stderr unless redirected)."""

    stream: TextIO | None = None

    def write(self, text: str) -> int:
        return (self.stream or sys.stderr).write(text)

    def flush(self) -> None:
        (self.stream or sys.stderr).flush()


_sink = _Sink()


def set_stream(stream: TextIO | None) -> TextIO | None:
    """Send log lines to `stream` (None = stderr); returns the previous one."""
    previous, _sink.stream = _sink.stream, stream
    return previous


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """JSON lines with timestamp, level, event and bound contextvars (request_id, ...)."""
    set_stream(stream)
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            # tracebacks as data, without local variables (they may hold secrets or user data)
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=_sink),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    # libraries that use stdlib logging (grpc, lancedb) end up as JSON lines too
    handler = logging.StreamHandler(_sink)  # type: ignore[arg-type]
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(_LEVELS[level], logging.WARNING))
