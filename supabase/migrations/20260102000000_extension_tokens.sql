-- Long-lived extension tokens, stored as hashes.
--
-- The issuer signs a long-lived JWT, hashes it (sha256, lower-case hex) and
-- stores only the hash here. Verification of such a token checks the
-- signature in Python and then asks validate_extension_token whether the hash
-- is still live (SECURITY.md T7). Raw tokens never reach the database.
--
-- Nobody reads or writes the table directly: anon and authenticated have no
-- privileges and no policies (RLS denies everything), and service_role goes
-- through the security definer RPCs below.
--
-- Also defines the argument checks shared by the token-store RPCs (schema
-- private): 20260102000100_oauth_codes_and_refresh_tokens.sql uses them too.
--
-- Result convention (docs/database.md, "Conventions"): every RPC that can say
-- no returns a named composite whose ok is false and whose reason is a stable
-- word; bad input raises SQLSTATE 22023 naming the argument. Here:
-- public.extension_token_result (validate_extension_token,
-- rotate_extension_token) and public.org_scope_result (check_org_scope).

-- Private helpers -----------------------------------------------------------

create function private.require_sha256_hex(p_value text, p_argument text)
returns void
language plpgsql
immutable
set search_path = ''
as $$
begin
    if p_value is null or p_value !~ '^[0-9a-f]{64}$' then
        raise exception '% must be the lower-case hex SHA-256 of the secret (64 characters)', p_argument
            using errcode = '22023';
    end if;
end
$$;

create function private.require_token_text(
    p_value text,
    p_argument text,
    p_max_length integer default 255
)
returns void
language plpgsql
immutable
set search_path = ''
as $$
begin
    if p_value is null or pg_catalog.btrim(p_value) = '' then
        raise exception '% is required', p_argument
            using errcode = '22023';
    end if;
    if pg_catalog.char_length(p_value) > p_max_length then
        raise exception '% is longer than % characters', p_argument, p_max_length
            using errcode = '22023';
    end if;
end
$$;

revoke all on function private.require_sha256_hex(text, text)
from public, anon, authenticated, service_role;
revoke all on function private.require_token_text(text, text, integer)
from public, anon, authenticated, service_role;

comment on function private.require_sha256_hex(text, text) is
'Raises 22023 naming the argument unless the value is a lower-case hex SHA-256 (64 characters). '
'Token stores keep hashes only.';
comment on function private.require_token_text(text, text, integer) is
'Raises 22023 naming the argument when the value is null, blank or longer than p_max_length.';

-- Table ---------------------------------------------------------------------

create table public.extension_tokens (
    id uuid primary key default gen_random_uuid(),
    clerk_user_id text not null check (clerk_user_id <> '' and char_length(clerk_user_id) <= 255),
    clerk_org_id text check (clerk_org_id <> '' and char_length(clerk_org_id) <= 255),
    name text not null check (btrim(name) <> '' and char_length(name) <= 200),
    token_hash text not null unique check (token_hash ~ '^[0-9a-f]{64}$'),
    jti text check (jti <> '' and char_length(jti) <= 255),
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    last_used_at timestamptz,
    revoked_at timestamptz,
    replaced_by uuid references public.extension_tokens (id) on delete set null,
    chain_started_at timestamptz not null default now(),
    constraint extension_tokens_expires_after_creation check (expires_at > created_at),
    constraint extension_tokens_replaced_only_when_revoked check (replaced_by is null or revoked_at is not null)
);

-- token_hash is indexed by its unique constraint.
create index extension_tokens_clerk_user_id_idx
on public.extension_tokens (clerk_user_id, created_at desc);

create unique index extension_tokens_jti_key
on public.extension_tokens (jti)
where jti is not null;

create index extension_tokens_replaced_by_idx
on public.extension_tokens (replaced_by)
where replaced_by is not null;

create index extension_tokens_expires_at_idx
on public.extension_tokens (expires_at);

alter table public.extension_tokens enable row level security;
-- No policies: RLS denies anon and authenticated everything. No privileges
-- either, not even for service_role (Supabase's default privileges grant all
-- of them on every new table in public).
revoke all on table public.extension_tokens from public, anon, authenticated, service_role;

comment on table public.extension_tokens is
'Long-lived extension tokens (type extension_long_lived), by SHA-256 hash only. Read and written '
'only through the token RPCs (service_role).';
comment on column public.extension_tokens.token_hash is
'Lower-case hex SHA-256 of the signed token. The token itself is never stored.';
comment on column public.extension_tokens.jti is
'The jti claim of the signed token, when the issuer passes it; unique.';
comment on column public.extension_tokens.last_used_at is
'Last successful validation, coarse: validate_extension_token writes it at most once a minute per token.';
comment on column public.extension_tokens.revoked_at is
'When the token was revoked by its owner or replaced by rotate_extension_token; a revoked token never validates again.';
comment on column public.extension_tokens.replaced_by is
'The token that rotate_extension_token issued in place of this one.';
comment on column public.extension_tokens.chain_started_at is
'When the rotation chain began (the original sign-in); copied to every replacement. A chain '
'never lives past chain_started_at + EXTENSION_TOKEN_MAX_LIFETIME (L3).';

-- Result types --------------------------------------------------------------

create type public.org_scope_result as (
    org_scope text,
    org_scope_reason text,
    seat_role text,
    seat_status text
);

comment on type public.org_scope_result is
'Result of check_org_scope (L5). org_scope: active (the user holds an active seat in the org) or '
'lost (org_scope_reason no_active_seat: suspended, revoked, pending, or no seat / org / user); '
'null for a personal token. seat_role: the seat''s role, null when lost. seat_status: the seat''s '
'status, null without a seat.';

create type public.extension_token_result as (
    ok boolean,
    reason text,
    id uuid,
    clerk_user_id text,
    clerk_org_id text,
    name text,
    expires_at timestamptz,
    jti text,
    chain_started_at timestamptz,
    replaced_id uuid,
    org_scope text,
    org_scope_reason text,
    seat_role text,
    seat_status text
);

comment on type public.extension_token_result is
'Result of validate_extension_token and rotate_extension_token. ok: the token is live (validate) '
'or was replaced (rotate); else reason says why not: unknown, revoked, expired, and for rotate '
'also account_closed (user deleted in Clerk) or chain_expired (L3); every other field is then '
'null. id, clerk_user_id, clerk_org_id, name, expires_at, jti, chain_started_at: the live token '
'(rotate: the new one; replaced_id: the one it replaced). org_scope, org_scope_reason, seat_role, '
'seat_status: check_org_scope''s answer for an org-scoped token (validate only, L5).';

create function private.extension_token_refusal(p_reason text)
returns public.extension_token_result
language sql
immutable
set search_path = ''
as $$
    select row(
        false, p_reason, null, null, null, null, null, null, null, null, null, null, null, null
    )::public.extension_token_result
$$;

revoke all on function private.extension_token_refusal(text)
from public, anon, authenticated, service_role;

comment on function private.extension_token_refusal(text) is
'The refusal row of validate_extension_token and rotate_extension_token: ok false, the reason, '
'nothing else.';

-- RPCs ----------------------------------------------------------------------

create function public.check_org_scope(p_clerk_user_id text, p_clerk_org_id text)
returns public.org_scope_result
language sql
stable
security definer
set search_path = ''
as $$
    -- Is the org scope a token carries still backed by a seat that may spend
    -- (L5)? Security definer only to call private.seat_allows_spending, the
    -- one seat rule (the service role may not call private helpers).
    -- One index probe per table; no row means lost.
    select
        case
            when p_clerk_org_id is null then null
            when private.seat_allows_spending(s.status) then 'active'
            else 'lost'
        end,
        case
            when p_clerk_org_id is null or private.seat_allows_spending(s.status) then null
            else 'no_active_seat'
        end,
        case when private.seat_allows_spending(s.status) then s.role end,
        s.status
    from (values (1)) as one (x)
    left join public.users as u on u.clerk_user_id = p_clerk_user_id
    left join public.organizations as o on o.clerk_org_id = p_clerk_org_id
    left join public.organization_seats as s on s.organization_id = o.id and s.user_id = u.id
$$;

revoke all on function public.check_org_scope(text, text)
from public, anon, authenticated, service_role;
grant execute on function public.check_org_scope(text, text) to service_role;

comment on function public.check_org_scope(text, text) is
'L5: whether an org-scoped token''s scope still holds, as public.org_scope_result: org_scope '
'active with seat_role when the user holds an active seat in the org, else lost with '
'org_scope_reason no_active_seat and seat_status (suspended, revoked, pending; null without a '
'seat, org or user); the seat rule is private.seat_allows_spending. Every field null for '
'p_clerk_org_id null. service_role only.';

create function public.create_extension_token(
    p_clerk_user_id text,
    p_token_hash text,
    p_name text,
    p_expires_at timestamptz,
    p_clerk_org_id text default null,
    p_jti text default null
)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_id uuid;
begin
    perform private.require_token_text(p_clerk_user_id, 'p_clerk_user_id');
    perform private.require_sha256_hex(p_token_hash, 'p_token_hash');
    perform private.require_token_text(p_name, 'p_name', 200);
    if p_clerk_org_id is not null then
        perform private.require_token_text(p_clerk_org_id, 'p_clerk_org_id');
    end if;
    if p_jti is not null then
        perform private.require_token_text(p_jti, 'p_jti');
    end if;
    if p_expires_at is null or p_expires_at <= pg_catalog.now() then
        raise exception 'p_expires_at must be in the future'
            using errcode = '22023';
    end if;

    insert into public.extension_tokens (
        clerk_user_id, clerk_org_id, name, token_hash, jti, expires_at
    )
    values (
        p_clerk_user_id, p_clerk_org_id, p_name, p_token_hash, p_jti, p_expires_at
    )
    returning id into v_id;

    return v_id;
end
$$;

revoke all on function public.create_extension_token(text, text, text, timestamptz, text, text)
from public, anon, authenticated, service_role;
grant execute on function public.create_extension_token(text, text, text, timestamptz, text, text)
to service_role;

comment on function public.create_extension_token(text, text, text, timestamptz, text, text) is
'Stores a new long-lived extension token by hash and returns its id. Bad input: SQLSTATE 22023 '
'naming the argument; a hash or jti already stored: 23505. service_role only.';


create function public.validate_extension_token(p_token_hash text)
returns public.extension_token_result
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_token public.extension_tokens%rowtype;
    v_scope public.org_scope_result;
begin
    perform private.require_sha256_hex(p_token_hash, 'p_token_hash');

    select t.*
    into v_token
    from public.extension_tokens as t
    where t.token_hash = p_token_hash;

    if not found then
        return private.extension_token_refusal('unknown');
    end if;
    if v_token.revoked_at is not null then
        return private.extension_token_refusal('revoked');
    end if;
    if v_token.expires_at <= pg_catalog.now() then
        return private.extension_token_refusal('expired');
    end if;

    -- Coarse last_used_at: write at most once a minute per token, and never
    -- wait for a row lock (a concurrent validation or rotation holding it
    -- means the row is being written anyway).
    if v_token.last_used_at is null
        or v_token.last_used_at < pg_catalog.now() - interval '60 seconds' then
        update public.extension_tokens as t
        set last_used_at = pg_catalog.now()
        where t.id = (
            select l.id
            from public.extension_tokens as l
            where l.id = v_token.id
                and (l.last_used_at is null
                    or l.last_used_at < pg_catalog.now() - interval '60 seconds')
            for update skip locked
        );
    end if;

    -- L5 in the same call: an org-scoped token's seat, read now.
    if v_token.clerk_org_id is not null then
        v_scope := public.check_org_scope(v_token.clerk_user_id, v_token.clerk_org_id);
    end if;

    return row(
        true, null, v_token.id, v_token.clerk_user_id, v_token.clerk_org_id, v_token.name,
        v_token.expires_at, v_token.jti, v_token.chain_started_at, null,
        v_scope.org_scope, v_scope.org_scope_reason, v_scope.seat_role, v_scope.seat_status
    )::public.extension_token_result;
end
$$;

revoke all on function public.validate_extension_token(text)
from public, anon, authenticated, service_role;
grant execute on function public.validate_extension_token(text) to service_role;

comment on function public.validate_extension_token(text) is
'Whether the hash names a live stored token, as public.extension_token_result: ok with id, '
'clerk_user_id, clerk_org_id, name, expires_at, jti, chain_started_at and, for an org-scoped '
'token, check_org_scope''s answer (org_scope active/lost, org_scope_reason, seat_role, '
'seat_status: L5) from the same call; else ok false with reason unknown, revoked or expired. '
'Touches last_used_at at most once a minute per token. service_role only.';


create function public.revoke_extension_token(p_token_id uuid, p_clerk_user_id text)
returns boolean
language plpgsql
security definer
set search_path = ''
as $$
begin
    perform private.require_token_text(p_clerk_user_id, 'p_clerk_user_id');
    if p_token_id is null then
        raise exception 'p_token_id is required'
            using errcode = '22023';
    end if;

    update public.extension_tokens as t
    set revoked_at = coalesce(t.revoked_at, pg_catalog.now())
    where t.id = p_token_id
        and t.clerk_user_id = p_clerk_user_id;

    return found;
end
$$;

revoke all on function public.revoke_extension_token(uuid, text)
from public, anon, authenticated, service_role;
grant execute on function public.revoke_extension_token(uuid, text) to service_role;

comment on function public.revoke_extension_token(uuid, text) is
'Revokes the token if it belongs to p_clerk_user_id. True when it does (also when it was already '
'revoked, which keeps the first revoked_at); false when no such token of that user exists. '
'service_role only.';


create function public.list_extension_tokens(p_clerk_user_id text)
returns table (
    id uuid,
    name text,
    clerk_org_id text,
    created_at timestamptz,
    last_used_at timestamptz,
    expires_at timestamptz,
    revoked_at timestamptz
)
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
    perform private.require_token_text(p_clerk_user_id, 'p_clerk_user_id');

    return query
    select t.id, t.name, t.clerk_org_id, t.created_at, t.last_used_at, t.expires_at, t.revoked_at
    from public.extension_tokens as t
    where t.clerk_user_id = p_clerk_user_id
    order by t.created_at desc, t.id;
end
$$;

revoke all on function public.list_extension_tokens(text)
from public, anon, authenticated, service_role;
grant execute on function public.list_extension_tokens(text) to service_role;

comment on function public.list_extension_tokens(text) is
'The user''s extension tokens, newest first, one row each (id, name, clerk_org_id, created_at, '
'last_used_at, expires_at, revoked_at); revoked and expired ones included; never the hash. '
'service_role only.';


create function public.rotate_extension_token(
    p_old_token_hash text,
    p_new_token_hash text,
    p_new_expires_at timestamptz,
    p_clerk_org_id text default null,
    p_jti text default null,
    p_max_lifetime_seconds integer default null
)
returns public.extension_token_result
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_old public.extension_tokens%rowtype;
    v_new_id uuid;
begin
    perform private.require_sha256_hex(p_old_token_hash, 'p_old_token_hash');
    perform private.require_sha256_hex(p_new_token_hash, 'p_new_token_hash');
    if p_old_token_hash = p_new_token_hash then
        raise exception 'p_new_token_hash must differ from p_old_token_hash'
            using errcode = '22023';
    end if;
    if p_clerk_org_id is not null then
        perform private.require_token_text(p_clerk_org_id, 'p_clerk_org_id');
    end if;
    if p_jti is not null then
        perform private.require_token_text(p_jti, 'p_jti');
    end if;
    if p_new_expires_at is null or p_new_expires_at <= pg_catalog.now() then
        raise exception 'p_new_expires_at must be in the future'
            using errcode = '22023';
    end if;
    if p_max_lifetime_seconds is not null and p_max_lifetime_seconds < 1 then
        raise exception 'p_max_lifetime_seconds must be positive'
            using errcode = '22023';
    end if;

    -- Revoke the old token only if it is still valid, its owner was not
    -- deleted in Clerk, and the replacement stays within the chain's
    -- absolute lifetime (L3: rotating never extends it). Concurrent rotations of
    -- one token queue on its row lock; the condition is re-checked after the
    -- first commits, so exactly one of them gets a row back.
    update public.extension_tokens as t
    set revoked_at = pg_catalog.now()
    where t.token_hash = p_old_token_hash
        and t.revoked_at is null
        and t.expires_at > pg_catalog.now()
        and (
            p_max_lifetime_seconds is null
            or p_new_expires_at <= t.chain_started_at + pg_catalog.make_interval(secs => p_max_lifetime_seconds)
        )
        and not exists (
            select 1
            from public.users as u
            where u.clerk_user_id = t.clerk_user_id and u.deleted_at is not null
        )
    returning t.* into v_old;

    if not found then
        -- Nothing changed: say why, in the order the update checks.
        select t.*
        into v_old
        from public.extension_tokens as t
        where t.token_hash = p_old_token_hash;

        return private.extension_token_refusal(
            case
                when not found then 'unknown'
                when v_old.revoked_at is not null then 'revoked'
                when v_old.expires_at <= pg_catalog.now() then 'expired'
                when exists (
                        select 1
                        from public.users as u
                        where u.clerk_user_id = v_old.clerk_user_id and u.deleted_at is not null
                    ) then 'account_closed'
                else 'chain_expired'
            end
        );
    end if;

    insert into public.extension_tokens (
        clerk_user_id, clerk_org_id, name, token_hash, jti, expires_at, chain_started_at
    )
    values (
        v_old.clerk_user_id, p_clerk_org_id, v_old.name, p_new_token_hash, p_jti, p_new_expires_at,
        v_old.chain_started_at
    )
    returning id into v_new_id;

    update public.extension_tokens as t
    set replaced_by = v_new_id
    where t.id = v_old.id;

    return row(
        true, null, v_new_id, v_old.clerk_user_id, p_clerk_org_id, v_old.name, p_new_expires_at,
        p_jti, v_old.chain_started_at, v_old.id, null, null, null, null
    )::public.extension_token_result;
end
$$;

revoke all on function public.rotate_extension_token(text, text, timestamptz, text, text, integer)
from public, anon, authenticated, service_role;
grant execute on function public.rotate_extension_token(text, text, timestamptz, text, text, integer)
to service_role;

comment on function public.rotate_extension_token(text, text, timestamptz, text, text, integer) is
'Atomically revokes a valid token and stores its replacement (same owner and name; p_clerk_org_id '
'is the new token''s org, null = personal), as public.extension_token_result: ok with the new '
'token''s id, clerk_user_id, clerk_org_id, name, expires_at, jti, chain_started_at and '
'replaced_id; else ok false with reason unknown, revoked, expired, account_closed (its user was '
'deleted in Clerk) or chain_expired (p_new_expires_at lies beyond chain_started_at + '
'p_max_lifetime_seconds: L3), nothing changed. The replacement keeps chain_started_at. Of '
'concurrent rotations of one token exactly one succeeds. service_role only.';
