"""A PostgREST-compatible RPC double, for testing the supabase-py backend.

THIS IS A TEST DOUBLE, NOT POSTGREST. No PostgREST binary can be installed on
this machine (it is not in Debian's packages, PyPI or npm, and nothing else
can be downloaded), so we stand in for the one endpoint the issuer uses, with
PostgREST's wire format, and run each call in the REAL test database:

* ``POST /rest/v1/rpc/<fn>`` with a JSON object of named arguments;
* ``apikey`` and ``Authorization: Bearer <key>`` headers, both required and
  equal to the service-role key (PostgREST's JWT check is reduced to that);
* the call runs as ``service_role`` with ``request.jwt.claims`` set, in one
  transaction, like PostgREST;
* a function returning a composite answers a JSON object, a scalar function
  its JSON value;
* errors are PostgREST's JSON ``{"code", "message", "details", "hint"}`` with
  its status mapping (22xxx/23xxx/P0001 → 400, 42501 → 401/403, 42883 → 404).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
import uvicorn
from psycopg import sql
from psycopg.types.json import Jsonb
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from issuer_dev.localdb import free_port


def _status_for(sqlstate: str | None) -> int:
    if not sqlstate:
        return 400
    if sqlstate == "42501":
        return 403
    if sqlstate in {"42883", "42P01"}:
        return 404
    if sqlstate.startswith(("08", "53", "57")):
        return 503
    return 400


@dataclass
class PostgrestDouble:
    db_url: str
    service_role_key: str
    calls: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _error(
        self, status: int, code: str | None, message: str, hint: str | None = None
    ) -> Response:
        body = {"code": code, "message": message, "details": None, "hint": hint}
        return JSONResponse(body, status_code=status)

    async def rpc(self, request: Request) -> Response:
        fn = request.path_params["fn"]
        auth = request.headers.get("authorization", "")
        if request.headers.get("apikey") != self.service_role_key or auth != (
            f"Bearer {self.service_role_key}"
        ):
            return self._error(401, "PGRST301", "JWT invalid")
        try:
            args = json.loads(await request.body() or b"{}")
        except ValueError:
            return self._error(400, "PGRST102", "Empty or invalid json")
        if not isinstance(args, dict):
            return self._error(400, "PGRST102", "Empty or invalid json")
        self.calls.append(fn)
        return self._run(fn, args)

    def _run(self, fn: str, args: dict[str, Any]) -> Response:
        with psycopg.connect(self.db_url) as conn:
            found = conn.execute(
                "select t.typtype = 'c', p.proretset from pg_proc p join pg_namespace n on n.oid = p.pronamespace "
                "join pg_type t on t.oid = p.prorettype where n.nspname = 'public' and p.proname = %s "
                "limit 1",
                (fn,),
            ).fetchone()
            if found is None:
                return self._error(
                    404, "PGRST202", f"Could not find the function public.{fn} in the schema cache"
                )
            composite, setof = bool(found[0]), bool(found[1])
            names = sorted(args)
            call = sql.SQL("public.{}({})").format(
                sql.Identifier(fn),
                sql.SQL(", ").join(
                    sql.SQL("{} => {}").format(sql.Identifier(n), sql.Placeholder(n)) for n in names
                ),
            )
            # PostgREST: a set-returning function (returns table / setof) answers
            # a JSON array of its rows, a composite one object, a scalar its value.
            if setof:
                stmt = sql.SQL("select coalesce(jsonb_agg(to_jsonb(r)), '[]') from {} as r").format(
                    call
                )
            elif composite:
                stmt = sql.SQL("select to_jsonb(r) from {} as r").format(call)
            else:
                stmt = sql.SQL("select to_jsonb({})").format(call)
            values = {k: Jsonb(v) if isinstance(v, dict | list) else v for k, v in args.items()}
            try:
                with conn.transaction():
                    conn.execute("set local role service_role")
                    conn.execute(
                        "select set_config('request.jwt.claims', %s, true)",
                        (json.dumps({"role": "service_role"}),),
                    )
                    row = conn.execute(stmt, values).fetchone()
            except psycopg.Error as exc:
                diag = exc.diag
                return self._error(
                    _status_for(exc.sqlstate),
                    exc.sqlstate,
                    diag.message_primary or str(exc),
                    diag.message_hint,
                )
        value = None if row is None else row[0]
        return Response(json.dumps(value), media_type="application/json")

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/rest/v1/rpc/{fn}", self.rpc, methods=["POST"])])


@contextmanager
def running_postgrest_double(db_url: str, service_role_key: str) -> Iterator[PostgrestDouble]:
    double = PostgrestDouble(db_url=db_url, service_role_key=service_role_key)
    config = uvicorn.Config(double.app(), host="127.0.0.1", port=double.port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the PostgREST double did not start")
        threading.Event().wait(0.02)
    try:
        yield double
    finally:
        server.should_exit = True
        thread.join(timeout=10)
