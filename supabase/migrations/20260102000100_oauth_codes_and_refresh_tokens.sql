-- PKCE authorization codes and rotating refresh tokens, stored as hashes.
--
-- The authorization-code flow of the VS Code extension (RFC 6749 4.1 with
-- RFC 7636 PKCE, S256 only) and refresh-token rotation with reuse detection
-- (RFC 9700 4.14). The issuer hashes every code and refresh token
-- (sha256, lower-case hex) before calling these RPCs; the PKCE verifier is
-- passed as is, compared and never stored.
--
-- SECURITY.md: O1 (S256 only, verifier format), O2 (single use under
-- concurrency; a second redemption revokes what the first issued), O3 (expiry
-- <= 10 minutes, client and redirect_uri bound), O4-O6 (rotation, reuse
-- revokes the family, no two live branches), O7 (revocation of descendants).
--
-- Locking: every change to the tokens of one refresh-token family happens
-- under a transaction-scoped advisory lock on the family id
-- (private.lock_refresh_family), so a family revocation can never miss a
-- token that a concurrent rotation is inserting. The partial unique index
-- refresh_tokens_one_live_per_family makes two live tokens in one family
-- impossible whatever the code does.
--
-- Result convention (docs/database.md, "Conventions"): the three grants of
-- the token endpoint (consume_oauth_code, rotate_refresh_token and, in
-- 20260108000000_device_codes.sql, poll_device_code) return one named
-- composite, public.token_grant_result: ok, or the OAuth error with a stable reason.
-- Bad input raises SQLSTATE 22023 naming the argument.

-- Private helpers -----------------------------------------------------------

create function private.pkce_s256(p_code_verifier text)
returns text
language sql
immutable
strict
set search_path = ''
as $$
    -- RFC 7636 4.2: BASE64URL-ENCODE(SHA256(ASCII(code_verifier))), no padding.
    select pg_catalog.translate(
        pg_catalog.rtrim(
            pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(p_code_verifier, 'UTF8')), 'base64'),
            '='
        ),
        '+/',
        '-_'
    )
$$;

create function private.lock_refresh_family(p_family_id uuid)
returns void
language sql
volatile
set search_path = ''
as $$
    select pg_catalog.pg_advisory_xact_lock(
        pg_catalog.hashtextextended('refresh_token_family:' || p_family_id::text, 0)
    )
$$;

revoke all on function private.pkce_s256(text) from public, anon, authenticated, service_role;
revoke all on function private.lock_refresh_family(uuid) from public, anon, authenticated, service_role;

comment on function private.pkce_s256(text) is
'RFC 7636 S256 code challenge of a verifier: base64url(sha256(verifier)) without padding.';
comment on function private.lock_refresh_family(uuid) is
'Transaction-scoped advisory lock serializing every change to one refresh-token family (rotation, '
'revocation, reuse detection).';

-- Result types --------------------------------------------------------------

create type public.token_grant_result as (
    ok boolean,
    error text,
    reason text,
    clerk_user_id text,
    clerk_org_id text,
    email text,
    code_id uuid,
    family_id uuid,
    device_code_id uuid,
    family_revoked boolean,
    interval_seconds integer
);

comment on type public.token_grant_result is
'Result of the token endpoint''s grants: consume_oauth_code, rotate_refresh_token, '
'poll_device_code. ok: tokens may be issued to clerk_user_id (clerk_org_id: the org granted, '
'null = personal; email: for the email claim, L9); code_id, family_id or device_code_id names '
'what was redeemed. Else error is the OAuth error code (invalid_grant; for the device grant also '
'authorization_pending, slow_down, access_denied, expired_token) and reason a stable word saying '
'why (the error itself when there is nothing more to say); family_revoked: a reused refresh token '
'revoked its family; interval_seconds: the device poll interval to keep.';

create type public.token_purge_result as (
    extension_tokens bigint,
    oauth_codes bigint,
    refresh_tokens bigint
);

comment on type public.token_purge_result is
'Result of purge_expired_tokens: how many rows it deleted from each token store.';

create function private.token_grant_ok(
    p_clerk_user_id text,
    p_clerk_org_id text,
    p_email text,
    p_code_id uuid default null,
    p_family_id uuid default null,
    p_device_code_id uuid default null
)
returns public.token_grant_result
language sql
immutable
set search_path = ''
as $$
    select row(
        true, null, null, p_clerk_user_id, p_clerk_org_id, p_email, p_code_id, p_family_id,
        p_device_code_id, null, null
    )::public.token_grant_result
$$;

create function private.token_grant_refusal(
    p_error text,
    p_reason text,
    p_family_revoked boolean default null,
    p_interval_seconds integer default null
)
returns public.token_grant_result
language sql
immutable
set search_path = ''
as $$
    select row(
        false, p_error, p_reason, null, null, null, null, null, null, p_family_revoked,
        p_interval_seconds
    )::public.token_grant_result
$$;

revoke all on function private.token_grant_ok(text, text, text, uuid, uuid, uuid)
from public, anon, authenticated, service_role;
revoke all on function private.token_grant_refusal(text, text, boolean, integer)
from public, anon, authenticated, service_role;

comment on function private.token_grant_ok(text, text, text, uuid, uuid, uuid) is
'The success row of a token-endpoint grant (public.token_grant_result): who, which org, which email, and '
'what was redeemed.';
comment on function private.token_grant_refusal(text, text, boolean, integer) is
'The refusal row of a token-endpoint grant (public.token_grant_result): the OAuth error, its stable '
'reason, and for some refusals family_revoked or interval_seconds.';

-- Tables --------------------------------------------------------------------

create table public.oauth_codes (
    id uuid primary key default gen_random_uuid(),
    code_hash text not null unique check (code_hash ~ '^[0-9a-f]{64}$'),
    clerk_user_id text not null check (clerk_user_id <> '' and char_length(clerk_user_id) <= 255),
    clerk_org_id text check (clerk_org_id <> '' and char_length(clerk_org_id) <= 255),
    email text check (char_length(email) <= 320),
    client_id text not null check (client_id <> '' and char_length(client_id) <= 255),
    redirect_uri text not null check (redirect_uri <> '' and char_length(redirect_uri) <= 2048),
    code_challenge text not null check (code_challenge ~ '^[A-Za-z0-9_-]{43}$'),
    code_challenge_method text not null default 'S256' check (code_challenge_method = 'S256'),
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    consumed_at timestamptz,
    replayed_at timestamptz,
    constraint oauth_codes_lifetime_at_most_10_minutes
    check (expires_at > created_at and expires_at <= created_at + interval '10 minutes'),
    constraint oauth_codes_replayed_only_when_consumed check (replayed_at is null or consumed_at is not null)
);

-- code_hash is indexed by its unique constraint.
create index oauth_codes_clerk_user_id_idx
on public.oauth_codes (clerk_user_id);

create index oauth_codes_expires_at_idx
on public.oauth_codes (expires_at);

alter table public.oauth_codes enable row level security;
revoke all on table public.oauth_codes from public, anon, authenticated, service_role;

comment on table public.oauth_codes is
'PKCE authorization codes (S256 only, <= 10 minutes, single use), by SHA-256 hash only. Read and '
'written only through create_oauth_code / consume_oauth_code (service_role).';
comment on column public.oauth_codes.code_hash is
'Lower-case hex SHA-256 of the authorization code. The code itself is never stored.';
comment on column public.oauth_codes.code_challenge is
'RFC 7636 S256 challenge: base64url(sha256(code_verifier)) without padding, 43 characters.';
comment on column public.oauth_codes.email is
'The signed-in user''s email when the code was created, for the email claim of the tokens it yields.';
comment on column public.oauth_codes.consumed_at is
'When the code was redeemed. Set by the one statement that also checks client, redirect_uri, expiry and the verifier.';
comment on column public.oauth_codes.replayed_at is
'When the code was first presented again after its redemption. From then on its grant is revoked: '
'the refresh-token families issued from it (refresh_tokens.oauth_code_id) are revoked, and a '
'refresh token issue_refresh_token stores for it later is stored revoked.';


create table public.refresh_tokens (
    id uuid primary key default gen_random_uuid(),
    token_hash text not null unique check (token_hash ~ '^[0-9a-f]{64}$'),
    family_id uuid not null,
    parent_id uuid references public.refresh_tokens (id) on delete set null,
    clerk_user_id text not null check (clerk_user_id <> '' and char_length(clerk_user_id) <= 255),
    clerk_org_id text check (clerk_org_id <> '' and char_length(clerk_org_id) <= 255),
    email text check (char_length(email) <= 320),
    client_id text not null check (client_id <> '' and char_length(client_id) <= 255),
    oauth_code_id uuid references public.oauth_codes (id) on delete set null,
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    rotated_at timestamptz,
    revoked_at timestamptz,
    revoked_reason text check (
        revoked_reason in ('revoked', 'reuse_detected', 'code_replayed', 'account_closed')
    ),
    family_started_at timestamptz not null default now(),
    constraint refresh_tokens_expires_after_creation check (expires_at > created_at),
    constraint refresh_tokens_revoked_reason_with_revoked_at check ((revoked_at is null) = (revoked_reason is null))
);

-- token_hash is indexed by its unique constraint.
-- O6 as a constraint: at most one live (neither rotated nor revoked) token per family.
create unique index refresh_tokens_one_live_per_family
on public.refresh_tokens (family_id)
where rotated_at is null and revoked_at is null;

create index refresh_tokens_family_id_idx
on public.refresh_tokens (family_id);

create index refresh_tokens_parent_id_idx
on public.refresh_tokens (parent_id)
where parent_id is not null;

create index refresh_tokens_oauth_code_id_idx
on public.refresh_tokens (oauth_code_id)
where oauth_code_id is not null;

create index refresh_tokens_clerk_user_id_idx
on public.refresh_tokens (clerk_user_id);

create index refresh_tokens_expires_at_idx
on public.refresh_tokens (expires_at);

alter table public.refresh_tokens enable row level security;
revoke all on table public.refresh_tokens from public, anon, authenticated, service_role;

comment on table public.refresh_tokens is
'Rotating refresh tokens in families, by SHA-256 hash only. Each rotation marks the presented '
'token rotated and adds its child; a family has at most one live token. Read and written only '
'through the refresh-token RPCs (service_role).';
comment on column public.refresh_tokens.token_hash is
'Lower-case hex SHA-256 of the refresh token. The token itself is never stored.';
comment on column public.refresh_tokens.family_id is
'All tokens descending from one grant (one issue_refresh_token call) share it; reuse detection '
'revokes the whole family.';
comment on column public.refresh_tokens.parent_id is
'The token whose rotation produced this one; null for the first token of a family.';
comment on column public.refresh_tokens.oauth_code_id is
'The authorization code whose redemption started this family (copied to every descendant); a '
'second redemption of that code revokes the family.';
comment on column public.refresh_tokens.email is
'The user''s email when the family was started (copied to every descendant), for the email claim '
'of the access tokens a refresh mints without a Clerk session.';
comment on column public.refresh_tokens.family_started_at is
'When the family began (the original sign-in), copied to every descendant. rotate_refresh_token '
'refuses a family older than its p_max_lifetime_seconds and never stores a token that outlives it (L3).';
comment on column public.refresh_tokens.rotated_at is
'When this token was exchanged for its child. A rotated token never works again; presenting it is reuse.';
comment on column public.refresh_tokens.revoked_reason is
'revoked (RFC 7009 revocation of it or an ancestor), reuse_detected (a rotated token was '
'presented again), code_replayed (its authorization code was redeemed twice), account_closed '
'(the Clerk user was deleted, banned or locked: L3).';

-- Authorization codes ---------------------------------------------------------

create function public.create_oauth_code(
    p_code_hash text,
    p_clerk_user_id text,
    p_client_id text,
    p_redirect_uri text,
    p_code_challenge text,
    p_code_challenge_method text default 'S256',
    p_clerk_org_id text default null,
    p_ttl_seconds integer default 600,
    p_email text default null
)
returns timestamptz
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_expires_at timestamptz;
begin
    perform private.require_sha256_hex(p_code_hash, 'p_code_hash');
    perform private.require_token_text(p_clerk_user_id, 'p_clerk_user_id');
    perform private.require_token_text(p_client_id, 'p_client_id');
    perform private.require_token_text(p_redirect_uri, 'p_redirect_uri', 2048);
    if p_clerk_org_id is not null then
        perform private.require_token_text(p_clerk_org_id, 'p_clerk_org_id');
    end if;
    if p_code_challenge_method is distinct from 'S256' then
        raise exception 'p_code_challenge_method must be S256 (plain and other methods are refused)'
            using errcode = '22023';
    end if;
    if p_code_challenge is null or p_code_challenge !~ '^[A-Za-z0-9_-]{43}$' then
        raise exception 'p_code_challenge must be base64url(sha256(code_verifier)) without padding (43 characters)'
            using errcode = '22023';
    end if;
    if p_email is not null then
        perform private.require_token_text(p_email, 'p_email', 320);
    end if;
    if p_ttl_seconds is null or p_ttl_seconds < 1 or p_ttl_seconds > 600 then
        raise exception 'p_ttl_seconds must be between 1 and 600'
            using errcode = '22023';
    end if;

    insert into public.oauth_codes (
        code_hash, clerk_user_id, clerk_org_id, email, client_id, redirect_uri,
        code_challenge, code_challenge_method, created_at, expires_at
    )
    values (
        p_code_hash, p_clerk_user_id, p_clerk_org_id, p_email, p_client_id, p_redirect_uri,
        p_code_challenge, 'S256', pg_catalog.now(),
        pg_catalog.now() + pg_catalog.make_interval(secs => p_ttl_seconds)
    )
    returning expires_at into v_expires_at;

    return v_expires_at;
end
$$;

revoke all on function public.create_oauth_code(text, text, text, text, text, text, text, integer, text)
from public, anon, authenticated, service_role;
grant execute on function public.create_oauth_code(text, text, text, text, text, text, text, integer, text)
to service_role;

comment on function public.create_oauth_code(text, text, text, text, text, text, text, integer, text) is
'Stores an authorization code by hash with its PKCE challenge (S256 only) and returns its expiry '
'(at most 10 minutes). p_email is handed back by consume_oauth_code. Bad input, plain included: '
'SQLSTATE 22023 naming the argument; a hash already stored: 23505. service_role only.';


create function public.consume_oauth_code(
    p_code_hash text,
    p_client_id text,
    p_redirect_uri text,
    p_code_verifier text
)
returns public.token_grant_result
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_code public.oauth_codes%rowtype;
    v_family uuid;
begin
    perform private.require_sha256_hex(p_code_hash, 'p_code_hash');

    -- RFC 7636 4.1: 43-128 characters of [A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~".
    if p_code_verifier is null or p_code_verifier !~ '^[A-Za-z0-9._~-]{43,128}$' then
        return private.token_grant_refusal('invalid_grant', 'invalid_verifier');
    end if;

    -- Redeem: one statement checks everything, S256 included, and marks the
    -- code consumed. Concurrent redemptions queue on the row lock and
    -- re-check consumed_at after the first commits: exactly one wins (O2).
    update public.oauth_codes as c
    set consumed_at = pg_catalog.now()
    where c.code_hash = p_code_hash
        and c.consumed_at is null
        and c.expires_at > pg_catalog.now()
        and c.client_id = p_client_id
        and c.redirect_uri = p_redirect_uri
        and c.code_challenge_method = 'S256'
        and c.code_challenge = private.pkce_s256(p_code_verifier)
    returning c.* into v_code;

    if found then
        return private.token_grant_ok(
            p_clerk_user_id => v_code.clerk_user_id,
            p_clerk_org_id => v_code.clerk_org_id,
            -- L9: the session's email, else the one the database knows.
            p_email => coalesce(
                v_code.email,
                (select u.email from public.users as u where u.clerk_user_id = v_code.clerk_user_id)
            ),
            p_code_id => v_code.id
        );
    end if;

    -- Presented again after its redemption (RFC 6749 4.1.2, O2): refuse and
    -- revoke the grant. Marking the code first makes issue_refresh_token
    -- store any later token of this code revoked, also when the first
    -- redemption has not stored its refresh token yet; an issuance already
    -- under way holds a share lock on the code row, so this update waits for
    -- it and the revocation below sees its token.
    update public.oauth_codes as c
    set replayed_at = coalesce(c.replayed_at, pg_catalog.now())
    where c.code_hash = p_code_hash
        and c.consumed_at is not null
    returning c.* into v_code;

    if found then
        for v_family in
            select distinct t.family_id
            from public.refresh_tokens as t
            where t.oauth_code_id = v_code.id
            order by t.family_id
        loop
            perform private.lock_refresh_family(v_family);
        end loop;

        update public.refresh_tokens as t
        set revoked_at = pg_catalog.now(),
            revoked_reason = 'code_replayed'
        where t.oauth_code_id = v_code.id
            and t.revoked_at is null;

        return private.token_grant_refusal('invalid_grant', 'already_used');
    end if;

    -- Not redeemed, nothing changed: say why. A wrong verifier does not burn
    -- the code (see docs/token-stores.md).
    select c.*
    into v_code
    from public.oauth_codes as c
    where c.code_hash = p_code_hash;

    return private.token_grant_refusal(
        'invalid_grant',
        case
            when not found then 'unknown_code'
            when v_code.expires_at <= pg_catalog.now() then 'expired'
            when v_code.client_id is distinct from p_client_id then 'client_mismatch'
            when v_code.redirect_uri is distinct from p_redirect_uri then 'redirect_uri_mismatch'
            else 'pkce_mismatch'
        end
    );
end
$$;

revoke all on function public.consume_oauth_code(text, text, text, text)
from public, anon, authenticated, service_role;
grant execute on function public.consume_oauth_code(text, text, text, text)
to service_role;

comment on function public.consume_oauth_code(text, text, text, text) is
'Redeems an authorization code once, as public.token_grant_result: ok with code_id, clerk_user_id, '
'clerk_org_id and email, or ok false with error invalid_grant and reason unknown_code, expired, '
'client_mismatch, redirect_uri_mismatch, pkce_mismatch, already_used or invalid_verifier. S256 is verified in the '
'statement that marks the code consumed. A redemption of an already consumed code revokes every '
'refresh-token family issued from it. service_role only.';

-- Refresh tokens ----------------------------------------------------------------

create function public.issue_refresh_token(
    p_token_hash text,
    p_clerk_user_id text,
    p_client_id text,
    p_expires_at timestamptz,
    p_clerk_org_id text default null,
    p_oauth_code_id uuid default null,
    p_email text default null
)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_code public.oauth_codes%rowtype;
    v_family_id uuid := gen_random_uuid();
    v_revoked_at timestamptz;
    v_revoked_reason text;
begin
    perform private.require_sha256_hex(p_token_hash, 'p_token_hash');
    perform private.require_token_text(p_clerk_user_id, 'p_clerk_user_id');
    perform private.require_token_text(p_client_id, 'p_client_id');
    if p_clerk_org_id is not null then
        perform private.require_token_text(p_clerk_org_id, 'p_clerk_org_id');
    end if;
    if p_email is not null then
        perform private.require_token_text(p_email, 'p_email', 320);
    end if;
    if p_expires_at is null or p_expires_at <= pg_catalog.now() then
        raise exception 'p_expires_at must be in the future'
            using errcode = '22023';
    end if;

    if p_oauth_code_id is not null then
        -- Share lock: a concurrent second redemption (consume_oauth_code) waits
        -- until this family is committed, then revokes it.
        select c.*
        into v_code
        from public.oauth_codes as c
        where c.id = p_oauth_code_id
        for share;

        if not found
            or v_code.consumed_at is null
            or v_code.clerk_user_id <> p_clerk_user_id
            or v_code.client_id <> p_client_id then
            raise exception 'p_oauth_code_id must name a redeemed authorization code of this user and client'
                using errcode = '22023';
        end if;
        -- The code was presented again before this first redemption stored its
        -- refresh token: store it revoked, as the replay would have left it.
        if v_code.replayed_at is not null then
            v_revoked_at := pg_catalog.now();
            v_revoked_reason := 'code_replayed';
        end if;
    end if;

    insert into public.refresh_tokens (
        token_hash, family_id, clerk_user_id, clerk_org_id, email, client_id, oauth_code_id, expires_at,
        revoked_at, revoked_reason
    )
    values (
        p_token_hash, v_family_id, p_clerk_user_id, p_clerk_org_id, p_email, p_client_id, p_oauth_code_id,
        p_expires_at, v_revoked_at, v_revoked_reason
    );

    return v_family_id;
end
$$;

revoke all on function public.issue_refresh_token(text, text, text, timestamptz, text, uuid, text)
from public, anon, authenticated, service_role;
grant execute on function public.issue_refresh_token(text, text, text, timestamptz, text, uuid, text)
to service_role;

comment on function public.issue_refresh_token(text, text, text, timestamptz, text, uuid, text) is
'Stores the first refresh token of a new family and returns the family id. With p_oauth_code_id '
'the code must be redeemed and of the same user and client (else 22023); if that code was already '
'presented a second time, the token is stored revoked (code_replayed), so it never refreshes. '
'p_email is kept for the email claim of the access tokens it refreshes. A hash already stored: '
'23505. service_role only.';


create function public.rotate_refresh_token(
    p_old_token_hash text,
    p_new_token_hash text,
    p_client_id text,
    p_new_expires_at timestamptz,
    p_grace_seconds integer default 0,
    p_max_lifetime_seconds integer default null
)
returns public.token_grant_result
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_family_id uuid;
    v_old public.refresh_tokens%rowtype;
    v_reason text;
begin
    perform private.require_sha256_hex(p_old_token_hash, 'p_old_token_hash');
    perform private.require_sha256_hex(p_new_token_hash, 'p_new_token_hash');
    if p_old_token_hash = p_new_token_hash then
        raise exception 'p_new_token_hash must differ from p_old_token_hash'
            using errcode = '22023';
    end if;
    perform private.require_token_text(p_client_id, 'p_client_id');
    if p_new_expires_at is null or p_new_expires_at <= pg_catalog.now() then
        raise exception 'p_new_expires_at must be in the future'
            using errcode = '22023';
    end if;
    if p_grace_seconds is null or p_grace_seconds < 0 or p_grace_seconds > 60 then
        raise exception 'p_grace_seconds must be between 0 and 60'
            using errcode = '22023';
    end if;
    if p_max_lifetime_seconds is not null and p_max_lifetime_seconds < 1 then
        raise exception 'p_max_lifetime_seconds must be positive'
            using errcode = '22023';
    end if;

    select t.family_id
    into v_family_id
    from public.refresh_tokens as t
    where t.token_hash = p_old_token_hash;

    if not found then
        return private.token_grant_refusal('invalid_grant', 'unknown');
    end if;

    -- Everything below sees the family as the previous lock holder left it.
    perform private.lock_refresh_family(v_family_id);

    -- L3: the user must still exist in Clerk (a deleted user's families were
    -- revoked by user.deleted; this also covers a family issued after it),
    -- and the family must be within its absolute lifetime.
    select t.* into v_old
    from public.refresh_tokens as t
    where t.token_hash = p_old_token_hash;
    if v_old.revoked_at is null and exists (
        select 1
        from public.users as u
        where u.clerk_user_id = v_old.clerk_user_id and u.deleted_at is not null
    ) then
        update public.refresh_tokens as t
        set revoked_at = pg_catalog.now(),
            revoked_reason = 'account_closed'
        where t.family_id = v_family_id
            and t.revoked_at is null;
        return private.token_grant_refusal('invalid_grant', 'account_closed');
    end if;
    if p_max_lifetime_seconds is not null
        and v_old.family_started_at + pg_catalog.make_interval(secs => p_max_lifetime_seconds)
        <= pg_catalog.now() then
        return private.token_grant_refusal('invalid_grant', 'chain_expired');
    end if;

    -- The conditional update is what rotates; the lock only makes the
    -- decision and the family revocation below race-free. O4: from here on
    -- the old token is rotated and never works again.
    update public.refresh_tokens as t
    set rotated_at = pg_catalog.now()
    where t.token_hash = p_old_token_hash
        and t.rotated_at is null
        and t.revoked_at is null
        and t.expires_at > pg_catalog.now()
        and t.client_id = p_client_id
    returning t.* into v_old;

    if found then
        insert into public.refresh_tokens (
            token_hash, family_id, parent_id, clerk_user_id, clerk_org_id, email, client_id,
            oauth_code_id, expires_at, family_started_at
        )
        values (
            p_new_token_hash, v_old.family_id, v_old.id, v_old.clerk_user_id, v_old.clerk_org_id,
            v_old.email, v_old.client_id, v_old.oauth_code_id,
            -- Rotating never extends the family's absolute lifetime (L3).
            least(
                p_new_expires_at,
                v_old.family_started_at + pg_catalog.make_interval(secs => p_max_lifetime_seconds)
            ),
            v_old.family_started_at
        );

        return private.token_grant_ok(
            p_clerk_user_id => v_old.clerk_user_id,
            p_clerk_org_id => v_old.clerk_org_id,
            -- L9: the family's email, else the one the database knows.
            p_email => coalesce(
                v_old.email,
                (select u.email from public.users as u where u.clerk_user_id = v_old.clerk_user_id)
            ),
            p_family_id => v_old.family_id
        );
    end if;

    select t.*
    into v_old
    from public.refresh_tokens as t
    where t.token_hash = p_old_token_hash;

    if not found then
        -- Purged between the two reads.
        v_reason := 'unknown';
    elsif v_old.revoked_at is not null then
        v_reason := 'revoked';
    elsif v_old.rotated_at is not null then
        -- Reuse (O5). Within the grace window (concurrent refreshes of one
        -- client, a retried request) refuse without revoking: the child stays
        -- the only live token. Otherwise revoke the family, newest included.
        if p_grace_seconds > 0
            and v_old.rotated_at > pg_catalog.now() - pg_catalog.make_interval(secs => p_grace_seconds) then
            return private.token_grant_refusal('invalid_grant', 'reused', p_family_revoked => false);
        end if;

        update public.refresh_tokens as t
        set revoked_at = pg_catalog.now(),
            revoked_reason = 'reuse_detected'
        where t.family_id = v_old.family_id
            and t.revoked_at is null;

        return private.token_grant_refusal('invalid_grant', 'reused', p_family_revoked => true);
    elsif v_old.client_id <> p_client_id then
        v_reason := 'client_mismatch';
    else
        v_reason := 'expired';
    end if;

    return private.token_grant_refusal('invalid_grant', v_reason);
end
$$;

revoke all on function public.rotate_refresh_token(text, text, text, timestamptz, integer, integer)
from public, anon, authenticated, service_role;
grant execute on function public.rotate_refresh_token(text, text, text, timestamptz, integer, integer)
to service_role;

comment on function public.rotate_refresh_token(text, text, text, timestamptz, integer, integer) is
'Exchanges a live refresh token for a new one in the same family, as public.token_grant_result: ok '
'with family_id, clerk_user_id, clerk_org_id and email, or ok false with error invalid_grant and '
'reason unknown, expired, revoked, client_mismatch or reused. A rotated token presented again '
'revokes the whole family (reason reused, family_revoked true) unless it was rotated less than '
'p_grace_seconds (0-60, default 0) ago (reason reused, family_revoked false, nothing changed). '
'L3: a family of a user deleted in Clerk is revoked (reason account_closed); a family older than '
'p_max_lifetime_seconds is refused (reason chain_expired); the new token never outlives '
'family_started_at + p_max_lifetime_seconds. service_role only.';


create function public.revoke_refresh_token(p_token_hash text)
returns boolean
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_token public.refresh_tokens%rowtype;
begin
    perform private.require_sha256_hex(p_token_hash, 'p_token_hash');

    select t.*
    into v_token
    from public.refresh_tokens as t
    where t.token_hash = p_token_hash;

    if not found then
        return false;
    end if;

    perform private.lock_refresh_family(v_token.family_id);

    -- The token and its descendants (RFC 7009 2.1, O7). Rotation never
    -- branches, so this is the rest of the family from this token on.
    with recursive descendants (id) as (
        select v_token.id
        union
        select c.id
        from public.refresh_tokens as c
        inner join descendants as d on c.parent_id = d.id
    )

    update public.refresh_tokens as t
    set revoked_at = pg_catalog.now(),
        revoked_reason = 'revoked'
    from descendants as d
    where t.id = d.id
        and t.revoked_at is null;

    return true;
end
$$;

revoke all on function public.revoke_refresh_token(text)
from public, anon, authenticated, service_role;
grant execute on function public.revoke_refresh_token(text) to service_role;

comment on function public.revoke_refresh_token(text) is
'RFC 7009: revokes the refresh token and every token descending from it. True when the hash is '
'known (also when it was already revoked or expired), false when unknown; the HTTP layer answers '
'200 either way. service_role only.';

-- Operations --------------------------------------------------------------------

create function public.purge_expired_tokens(p_retention interval default interval '7 days')
returns public.token_purge_result
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_cutoff timestamptz;
    v_extension_tokens bigint;
    v_oauth_codes bigint;
    v_refresh_tokens bigint;
begin
    if p_retention is null or p_retention < interval '0' then
        raise exception 'p_retention must be a non-negative interval'
            using errcode = '22023';
    end if;
    v_cutoff := pg_catalog.now() - p_retention;

    delete from public.extension_tokens as t
    where t.expires_at < v_cutoff
        or t.revoked_at < v_cutoff;
    get diagnostics v_extension_tokens = row_count;

    -- Whole families only, once their newest token has expired: reuse of an
    -- old token keeps being detected while any token of the family could live.
    delete from public.refresh_tokens as t
    where t.family_id in (
        select f.family_id
        from public.refresh_tokens as f
        group by f.family_id
        having max(f.expires_at) < v_cutoff
    );
    get diagnostics v_refresh_tokens = row_count;

    delete from public.oauth_codes as c
    where c.expires_at < v_cutoff;
    get diagnostics v_oauth_codes = row_count;

    return row(v_extension_tokens, v_oauth_codes, v_refresh_tokens)::public.token_purge_result;
end
$$;

revoke all on function public.purge_expired_tokens(interval)
from public, anon, authenticated, service_role;
grant execute on function public.purge_expired_tokens(interval) to service_role;

comment on function public.purge_expired_tokens(interval) is
'Operations: deletes extension tokens expired or revoked, authorization codes expired, and '
'refresh-token families whose newest token expired, more than p_retention (default 7 days) ago. '
'Returns the counts as public.token_purge_result (extension_tokens, oauth_codes, refresh_tokens). '
'service_role only.';
