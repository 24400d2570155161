"""A TCP proxy in front of Postgres that records what clients ask the server.

For tests that must see what a *separate process* (a real ``issuer serve``)
sends to the database: its statements cannot be counted in-process. The tap
forwards bytes both ways unchanged and parses only the client's side of the
protocol (frontend messages, PostgreSQL docs, "Message Formats"): each
statement *executed* (a simple ``Query``, or a ``Bind`` of a statement parsed
earlier on the same connection, psycopg's prepared statements) is recorded
with its SQL text.

Clients must connect without TLS or GSS encryption (``sslmode=disable``,
``gssencmode=disable``, see :meth:`PgWireTap.url`): the tap reads plain text.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

#: Requests sent before the startup message, answered by one byte.
_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104


def _cstring(data: bytes, start: int) -> tuple[str, int]:
    end = data.index(b"\0", start)
    return data[start:end].decode("utf-8", "replace"), end + 1


@dataclass
class PgWireTap:
    listen_port: int
    upstream: tuple[str, int]
    executed: list[str] = field(default_factory=list)
    """SQL text of every statement executed through the tap, in order."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: socket.socket | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def url(self, db_url: str) -> str:
        """``db_url`` pointed at the tap, without encryption."""
        parts = urlsplit(db_url)
        netloc = parts.netloc.rsplit("@", 1)
        userinfo = netloc[0] + "@" if len(netloc) == 2 else ""
        query = "sslmode=disable&gssencmode=disable"
        if parts.query:
            query = parts.query + "&" + query
        return urlunsplit(
            (parts.scheme, f"{userinfo}127.0.0.1:{self.listen_port}", parts.path, query, "")
        )

    def take(self) -> list[str]:
        """The statements executed since the last call (and forget them)."""
        with self._lock:
            taken, self.executed = self.executed, []
        return taken

    # -- proxying ---------------------------------------------------------------
    def _record(self, sql: str) -> None:
        with self._lock:
            self.executed.append(sql)

    def _accept_loop(self) -> None:
        assert self._server is not None
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
            threading.Thread(target=self._frontend, args=(client, upstream), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _frontend(self, client: socket.socket, upstream: socket.socket) -> None:
        """Forward the client's bytes, recording the statements it executes."""
        buffer = b""
        started = False
        statements: dict[str, str] = {}
        try:
            while chunk := client.recv(65536):
                upstream.sendall(chunk)
                buffer += chunk
                while True:
                    if not started:
                        if len(buffer) < 8:
                            break
                        (length, code) = struct.unpack("!ii", buffer[:8])
                        if len(buffer) < length:
                            break
                        buffer = buffer[length:]
                        if code not in (_SSL_REQUEST, _GSSENC_REQUEST):
                            started = True
                        continue
                    if len(buffer) < 5:
                        break
                    kind = buffer[:1]
                    (length,) = struct.unpack("!i", buffer[1:5])
                    if len(buffer) < 1 + length:
                        break
                    body, buffer = buffer[5 : 1 + length], buffer[1 + length :]
                    if kind == b"Q":
                        self._record(_cstring(body, 0)[0])
                    elif kind == b"P":
                        name, at = _cstring(body, 0)
                        statements[name] = _cstring(body, at)[0]
                    elif kind == b"B":
                        _, at = _cstring(body, 0)  # portal
                        name, _ = _cstring(body, at)
                        self._record(statements.get(name, f"<unknown statement {name!r}>"))
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@contextmanager
def pgwire_tap(db_url: str) -> Iterator[PgWireTap]:
    """A tap in front of the server of ``db_url`` on a free loopback port; closed afterwards."""
    parts = urlsplit(db_url)
    server = socket.create_server(("127.0.0.1", 0))
    tap = PgWireTap(server.getsockname()[1], (parts.hostname or "127.0.0.1", parts.port or 5432))
    tap._server = server
    thread = threading.Thread(target=tap._accept_loop, daemon=True, name="pgwire-tap")
    thread.start()
    try:
        yield tap
    finally:
        tap._stop.set()
        try:
            server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        server.close()
        thread.join(timeout=5)
