"""The request-head limit ``issuer serve`` relies on, checked on the installed uvicorn (F4).

uvicorn is not pinned to a minor version (issue 19): ``choose_http`` probes
the httptools subclass at start-up and falls back to h11 with the same
16 KB limit if an upgrade broke it. The served limit itself:
test_fuzz_api.py::test_F4_an_endless_request_head_is_cut_off.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from issuer.api.http_protocol import (
    MAX_HEAD_BYTES,
    HeadLimitedHttpToolsProtocol,
    choose_http,
    head_limit_works,
)


def test_F4_the_head_limit_works_on_the_installed_uvicorn() -> None:
    assert head_limit_works(HeadLimitedHttpToolsProtocol)
    assert choose_http() == {"http": HeadLimitedHttpToolsProtocol}


def test_F4_without_a_working_limit_serve_falls_back_to_h11_with_the_same_limit() -> None:
    # uvicorn's own httptools protocol has no head limit: the probe sees it.
    assert not head_limit_works(HttpToolsProtocol)
    assert choose_http(HttpToolsProtocol) == {
        "http": "h11",
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
    }


class _Broken(HeadLimitedHttpToolsProtocol):
    """As if an upgrade renamed what the subclass overrides: constructing it fails."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError("unexpected keyword argument '_loop'")


def test_F4_a_protocol_that_cannot_even_start_also_falls_back() -> None:
    assert not head_limit_works(_Broken)
    assert choose_http(_Broken)["http"] == "h11"
