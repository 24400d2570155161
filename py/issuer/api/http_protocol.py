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

Why here and not elsewhere (issue 19): uvicorn's only public head limit,
``h11_max_incomplete_event_size``, applies to the h11 parser alone; httptools
(llhttp) has no configurable limit (uvicorn #157, #1684: refused upstream, and
httptools #87: a callback cannot stop the parser early); and an ASGI
middleware sees a request only once its head is complete, too late. So the
limit stays in the protocol, which overrides three methods of uvicorn's
``HttpToolsProtocol``, not a public API. uvicorn is therefore not pinned to a
minor version (its security releases must be installable); instead
:func:`choose_http` checks, when ``issuer serve`` starts, that this subclass
really cuts an endless head off on the uvicorn installed (a fake transport fed
17 KB of unfinished head must get the 400 and be closed). If an upgrade broke
it, the server runs uvicorn's h11 parser with the same 16 KB limit instead
(slower, never unlimited: fail closed) and logs why.
``tests/test_fuzz_api.py::test_F4_an_endless_request_head_is_cut_off`` checks
the served limit end to end, ``tests/test_http_protocol.py`` the choice.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

log = logging.getLogger(__name__)
_QUIET = logging.getLogger(__name__ + ".probe")
_QUIET.disabled = True

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


class _Transport(asyncio.Transport):
    """Just enough transport for :func:`head_limit_works`: records what is written."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _app(scope: Any, receive: Any, send: Any) -> None:  # never reached
    raise AssertionError("a request whose head never ends reached the app")


def head_limit_works(protocol: type[HttpToolsProtocol] | None = None) -> bool:
    """Does ``protocol`` cut off an unfinished head past ``MAX_HEAD_BYTES`` on this uvicorn?"""
    protocol = protocol or HeadLimitedHttpToolsProtocol
    loop = asyncio.new_event_loop()
    try:
        config = Config(_app, log_config=None)
        config.load()
        proto = protocol(config=config, server_state=ServerState(), app_state={}, _loop=loop)
        proto.logger = _QUIET  # the probe's 400 is not worth a warning at every start
        transport = _Transport()
        proto.connection_made(transport)
        proto.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n")
        for i in range(MAX_HEAD_BYTES // 1000 + 2):
            if transport.closed:
                break
            proto.data_received(f"X-Pad-{i}: {'a' * 990}\r\n".encode())
        return transport.closed and transport.written.startswith(b"HTTP/1.1 400")
    except Exception:  # an upgrade changed what this relies on
        log.exception("the httptools head limit could not be checked")
        return False
    finally:
        loop.close()


def choose_http(protocol: type[HttpToolsProtocol] | None = None) -> dict[str, Any]:
    """uvicorn options for the HTTP parser: httptools with the head limit, else h11 with it."""
    protocol = protocol or HeadLimitedHttpToolsProtocol
    if head_limit_works(protocol):
        return {"http": protocol}
    log.warning(
        "uvicorn %s: the httptools request-head limit does not work on this version; "
        "serving with h11 and h11_max_incomplete_event_size=%d instead (slower)",
        _uvicorn_version(),
        MAX_HEAD_BYTES,
    )
    return {"http": "h11", "h11_max_incomplete_event_size": MAX_HEAD_BYTES}


def _uvicorn_version() -> str:
    import uvicorn

    return str(uvicorn.__version__)
