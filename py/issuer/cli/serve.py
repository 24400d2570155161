"""``issuer serve``: the HTTP API under uvicorn."""

from __future__ import annotations

import ipaddress
import os
from typing import Annotated

import typer

from issuer.errors import ConfigError
from issuer.settings import load_settings

#: How long uvicorn's supervisor waits for a worker's answer (``--workers`` > 1).
WORKER_HEALTHCHECK_SECONDS = 30


def _loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1): only this machine reaches it."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    host: Annotated[str, typer.Option(envvar="HOST", help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="PORT", help="TCP port.")] = 8000,
    workers: Annotated[
        int, typer.Option(envvar="WEB_CONCURRENCY", help="Worker processes.", min=1)
    ] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the HTTP API (settings from the environment; see docs/operations.md)."""
    import uvicorn

    from issuer.api.http_protocol import choose_http

    settings = load_settings()  # fail here, with the variable's name, not inside a worker
    if settings.database_url:
        from issuer.rpc import verify_database_role

        # Refuse to start as another role than DATABASE_ROLE (a pooler that
        # dropped -c role=): one line on stderr, not a traceback per worker.
        verify_database_role(
            settings.database_url,
            settings.database_role or None,
            pooler=settings.database_pooler,
        )
    if _loopback(host):
        # A local run: the RFC 8414 issuer identifier is where this serves.
        url_host = f"[{host}]" if ":" in host else host
        os.environ.setdefault("ISSUER_URL", f"http://{url_host}:{port}")
    elif settings.issuer_url is None:
        # Elsewhere the public URL is unknowable but from the Host header,
        # which any client sets: absolute URLs never come from it (L11).
        raise ConfigError(
            f"ISSUER_URL: required when serving on {host} (the public https URL of this issuer)",
            variable="ISSUER_URL",
        )
    os.environ.setdefault("FORWARDED_ALLOW_IPS", "127.0.0.1")
    uvicorn.run(
        "issuer.api.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        # Request limits at the HTTP layer (F4, docs/reliability.md); the app
        # adds its own (issuer.api.app: 431 headers, 413 bodies, JSON depth).
        # httptools (C parser) with h11's 16 KB incomplete-head limit added
        # back (issuer.api.http_protocol), checked on the installed uvicorn;
        # h11 with the same limit if that check fails. uvloop when installed.
        **choose_http(),
        loop="auto",
        limit_concurrency=1000,  # more open connections/requests: 503
        timeout_keep_alive=5,  # idle keep-alive connections closed after 5 s
        server_header=False,  # do not advertise the server software
        # --workers N: the supervisor pings each worker and replaces one that
        # does not answer in time. A spawned worker cannot answer while it
        # imports the app (1.5 s of CPU; 8-9 s measured on a busy 2-core
        # machine), and uvicorn's default of 5 s killed every worker before it
        # served (issue 16 P2): allow 30 s.
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
    )
