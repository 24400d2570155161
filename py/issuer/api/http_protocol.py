"""The HTTP/1.1 parser ``issuer serve`` runs: httptools, with a limit on the request head.

uvicorn offers two parsers. ``h11`` (pure Python) refuses a request head
(request line + headers) still incomplete after ``h11_max_incomplete_event_size``
bytes; ``httptools`` (C, llhttp) has no such limit, so a client could stream
headers forever into the server's memory. httptools is what makes the usage
endpoint fast enough (docs/performance.md, "HTTP usage": server CPU per
request 1.9-2.1 ms with h11, 1.4-1.9 ms with httptools and uvloop,
``python -m bench --scenario http-usage``), so this subclass adds h11's limit
back: head bytes are counted from the start of each request until the parser
reports the head complete, and past :data:`MAX_HEAD_BYTES` the connection gets
uvicorn's plain-text ``400`` and is closed.

The check runs after each read is parsed, so at most one read beyond the limit
is buffered, as with h11. A head that arrives complete in one read is not
refused here; the app's own header and URL limits answer it (431, 414:
:class:`issuer.api.app.BodyLimit`).

This overrides three methods of uvicorn's ``HttpToolsProtocol``, which is not a
public API: pyproject pins uvicorn's minor version, and
``tests/test_fuzz_api.py::test_F4_an_endless_request_head_is_cut_off`` fails if
an upgrade breaks the limit.
"""

from __future__ import annotations

from typing import Any, Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES: Final = 16 * 1024
"""Longest request head (request line + headers) the server keeps reading."""


class HeadLimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol; a head still incomplete after ``MAX_HEAD_BYTES``: 400."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._in_head = True

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if (
            self._in_head
            and self._head_bytes > MAX_HEAD_BYTES
            and self.transport is not None
            and not self.transport.is_closing()
        ):
            msg = "Invalid HTTP request received: request head too large."
            self.logger.warning(msg)
            self.send_400_response(msg)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0
