-- The health check's one trivial query (SECURITY.md L8).
--
-- GET /healthz is unauthenticated; over PostgREST (the supabase-py backend)
-- it calls this and nothing else, so a health probe can never make the
-- database scan the ledger (credit_consistency_check is an operator's tool).

create function public.health_check()
returns boolean
language sql
stable
security invoker
set search_path = ''
as $$
    select true
$$;

revoke all on function public.health_check() from public, anon, authenticated, service_role;
grant execute on function public.health_check() to service_role;

comment on function public.health_check() is
'L8: true when the database answers; reads no table. Called by the issuer''s GET /healthz over '
'PostgREST. Service role only.';
