-- The device authorization grant (RFC 8628) for headless sign-in (Remote-SSH,
-- Codespaces: no URI handler and no loopback port reach the user's browser).
--
-- The extension asks for a device code and a short user code; the user types
-- the user code on /vscode/device in a browser where they are signed in,
-- picks the account (Personal or an org where their seat is active) and
-- approves or denies; the extension polls the token endpoint with the device
-- code. Both codes are stored as hashes only (the issuer hashes them; the
-- user code under a server-side key, since 8 letters are few enough to
-- enumerate offline). SECURITY.md R4:
--
-- * a device code is redeemed once, also under concurrent polls (the row
--   lock of the one update that marks it consumed);
-- * it lives at most 30 minutes; polls faster than its interval get
--   slow_down and the interval grows by 5 seconds (RFC 8628 3.5);
-- * a user's wrong user-code guesses are counted: after 10 within 15 minutes
--   the page refuses every code for that user until the window passes
--   (RFC 8628 5.1: the rate of guesses is bounded).
--
-- Only service_role reaches any of it, through the RPCs below.
--
-- Result convention (docs/database.md, "Conventions"): poll_device_code
-- answers with public.token_grant_result like the other grants of the token
-- endpoint (20260102000100); decide_device_code with public.device_decision_result.
-- Refusals are values with a stable reason; bad input raises SQLSTATE 22023
-- naming the argument.

-- Tables --------------------------------------------------------------------

create table public.device_codes (
    id uuid primary key default gen_random_uuid(),
    device_code_hash text not null unique check (device_code_hash ~ '^[0-9a-f]{64}$'),
    user_code_hash text not null unique check (user_code_hash ~ '^[0-9a-f]{64}$'),
    client_id text not null check (client_id <> '' and char_length(client_id) <= 255),
    status text not null default 'pending'
    check (status in ('pending', 'approved', 'denied', 'consumed')),
    clerk_user_id text check (clerk_user_id <> '' and char_length(clerk_user_id) <= 255),
    clerk_org_id text check (clerk_org_id <> '' and char_length(clerk_org_id) <= 255),
    email text check (char_length(email) <= 320),
    interval_seconds integer not null default 5 check (interval_seconds between 1 and 300),
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    last_polled_at timestamptz,
    decided_at timestamptz,
    consumed_at timestamptz,
    constraint device_codes_lifetime_at_most_30_minutes
    check (expires_at > created_at and expires_at <= created_at + interval '30 minutes'),
    constraint device_codes_decided_by_a_user
    check ((status = 'pending') = (decided_at is null) and (status = 'pending') = (clerk_user_id is null)),
    constraint device_codes_org_only_when_approved
    check (clerk_org_id is null or status in ('approved', 'consumed')),
    constraint device_codes_consumed_at_with_status check ((status = 'consumed') = (consumed_at is not null))
);

-- device_code_hash and user_code_hash are indexed by their unique constraints.
create index device_codes_expires_at_idx
on public.device_codes (expires_at);

alter table public.device_codes enable row level security;
revoke all on table public.device_codes from public, anon, authenticated, service_role;

comment on table public.device_codes is
'RFC 8628 device authorizations, by hash only: pending until a signed-in user approves (with the '
'org they chose) or denies on /vscode/device, then redeemed once by the polling client. Read and '
'written only through the device-code RPCs (service_role).';
comment on column public.device_codes.device_code_hash is
'Lower-case hex SHA-256 of the device code. The code itself is never stored.';
comment on column public.device_codes.user_code_hash is
'Lower-case hex HMAC-SHA-256 of the normalized user code under an issuer key. The code itself is '
'never stored.';
comment on column public.device_codes.interval_seconds is
'Minimum seconds between two polls; grows by 5 at every slow_down (RFC 8628 3.5).';
comment on column public.device_codes.clerk_org_id is
'The organization the approving user chose (null: Personal). The token endpoint re-resolves it '
'(membership and seat) at every grant, as for authorization codes.';


create table public.device_code_attempts (
    clerk_user_id text primary key check (clerk_user_id <> '' and char_length(clerk_user_id) <= 255),
    window_started_at timestamptz not null default now(),
    failures integer not null default 0 check (failures >= 0)
);

alter table public.device_code_attempts enable row level security;
revoke all on table public.device_code_attempts from public, anon, authenticated, service_role;

comment on table public.device_code_attempts is
'Wrong user codes entered per user in the current 15-minute window: at 10 the verification page '
'refuses every code until the window ends (RFC 8628 5.1). Written by decide_device_code.';

-- Result type ---------------------------------------------------------------

create type public.device_decision_result as (
    ok boolean,
    reason text,
    status text,
    client_id text,
    retry_at timestamptz
);

comment on type public.device_decision_result is
'Result of decide_device_code. ok: the decision was recorded; status approved or denied, '
'client_id the client that asked. Else reason: unknown_code (counted as a wrong guess), expired, '
'already_decided or rate_limited (with retry_at, when the user may try again).';

-- RPCs ----------------------------------------------------------------------

create function public.create_device_code(
    p_device_code_hash text,
    p_user_code_hash text,
    p_client_id text,
    p_ttl_seconds integer default 600,
    p_interval_seconds integer default 5
)
returns timestamptz
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_expires_at timestamptz;
begin
    perform private.require_sha256_hex(p_device_code_hash, 'p_device_code_hash');
    perform private.require_sha256_hex(p_user_code_hash, 'p_user_code_hash');
    perform private.require_token_text(p_client_id, 'p_client_id');
    if p_ttl_seconds is null or p_ttl_seconds < 1 or p_ttl_seconds > 1800 then
        raise exception 'p_ttl_seconds must be between 1 and 1800'
            using errcode = '22023';
    end if;
    if p_interval_seconds is null or p_interval_seconds < 1 or p_interval_seconds > 60 then
        raise exception 'p_interval_seconds must be between 1 and 60'
            using errcode = '22023';
    end if;

    insert into public.device_codes (
        device_code_hash, user_code_hash, client_id, interval_seconds, created_at, expires_at
    )
    values (
        p_device_code_hash, p_user_code_hash, p_client_id, p_interval_seconds, pg_catalog.now(),
        pg_catalog.now() + pg_catalog.make_interval(secs => p_ttl_seconds)
    )
    returning expires_at into v_expires_at;

    return v_expires_at;
end
$$;

revoke all on function public.create_device_code(text, text, text, integer, integer)
from public, anon, authenticated, service_role;
grant execute on function public.create_device_code(text, text, text, integer, integer)
to service_role;

comment on function public.create_device_code(text, text, text, integer, integer) is
'Stores a pending device authorization by its two hashes and returns its expiry (at most 30 '
'minutes). A user-code hash already stored (a collision): 23505, the caller draws another code. '
'Bad input: 22023 naming the argument. service_role only.';


create function public.decide_device_code(
    p_user_code_hash text,
    p_clerk_user_id text,
    p_approve boolean,
    p_clerk_org_id text default null,
    p_email text default null
)
returns public.device_decision_result
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_attempts public.device_code_attempts%rowtype;
    v_code public.device_codes%rowtype;
begin
    perform private.require_sha256_hex(p_user_code_hash, 'p_user_code_hash');
    perform private.require_token_text(p_clerk_user_id, 'p_clerk_user_id');
    if p_approve is null then
        raise exception 'p_approve is required'
            using errcode = '22023';
    end if;
    if p_clerk_org_id is not null then
        perform private.require_token_text(p_clerk_org_id, 'p_clerk_org_id');
    end if;
    if p_email is not null then
        perform private.require_token_text(p_email, 'p_email', 320);
    end if;

    -- The user's guesses: a new window after 15 minutes; refuse at 10 failures.
    -- The row lock serializes one user's concurrent attempts.
    insert into public.device_code_attempts as a (clerk_user_id)
    values (p_clerk_user_id)
    on conflict (clerk_user_id) do update
        set window_started_at = case
                when a.window_started_at <= pg_catalog.now() - interval '15 minutes'
                    then pg_catalog.now()
                else a.window_started_at
            end,
            failures = case
                when a.window_started_at <= pg_catalog.now() - interval '15 minutes' then 0
                else a.failures
            end
    returning a.* into v_attempts;

    if v_attempts.failures >= 10 then
        return row(
            false, 'rate_limited', null, null, v_attempts.window_started_at + interval '15 minutes'
        )::public.device_decision_result;
    end if;

    update public.device_codes as d
    set status = case when p_approve then 'approved' else 'denied' end,
        clerk_user_id = p_clerk_user_id,
        clerk_org_id = case when p_approve then p_clerk_org_id end,
        email = case when p_approve then p_email end,
        decided_at = pg_catalog.now()
    where d.user_code_hash = p_user_code_hash
        and d.status = 'pending'
        and d.expires_at > pg_catalog.now()
    returning d.* into v_code;

    if found then
        return row(true, null, v_code.status, v_code.client_id, null)::public.device_decision_result;
    end if;

    select d.*
    into v_code
    from public.device_codes as d
    where d.user_code_hash = p_user_code_hash;

    if not found then
        update public.device_code_attempts as a
        set failures = a.failures + 1
        where a.clerk_user_id = p_clerk_user_id;
        return row(false, 'unknown_code', null, null, null)::public.device_decision_result;
    end if;

    return row(
        false, case when v_code.status <> 'pending' then 'already_decided' else 'expired' end,
        null, null, null
    )::public.device_decision_result;
end
$$;

revoke all on function public.decide_device_code(text, text, boolean, text, text)
from public, anon, authenticated, service_role;
grant execute on function public.decide_device_code(text, text, boolean, text, text)
to service_role;

comment on function public.decide_device_code(text, text, boolean, text, text) is
'The signed-in user approves (with the chosen org, null = Personal) or denies the pending device '
'authorization of a user code, as public.device_decision_result: ok with status and client_id, or ok '
'false with reason unknown_code (counted as a wrong guess), expired, already_decided or '
'rate_limited (10 wrong guesses in 15 minutes; with retry_at). The issuer checks membership and '
'seat before approving. '
'service_role only.';


create function public.poll_device_code(
    p_device_code_hash text,
    p_client_id text
)
returns public.token_grant_result
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_code public.device_codes%rowtype;
    v_now timestamptz := pg_catalog.clock_timestamp();
begin
    perform private.require_sha256_hex(p_device_code_hash, 'p_device_code_hash');

    -- The row lock queues concurrent polls of one code: exactly one of them
    -- sees 'approved' and consumes it.
    select d.*
    into v_code
    from public.device_codes as d
    where d.device_code_hash = p_device_code_hash
    for update;

    if not found or v_code.client_id is distinct from p_client_id then
        return private.token_grant_refusal(
            'invalid_grant', case when found then 'client_mismatch' else 'unknown_code' end
        );
    end if;
    if v_code.status = 'consumed' then
        return private.token_grant_refusal('invalid_grant', 'already_used');
    end if;
    if v_code.expires_at <= v_now then
        return private.token_grant_refusal('expired_token', 'expired_token');
    end if;
    if v_code.status = 'denied' then
        return private.token_grant_refusal('access_denied', 'access_denied');
    end if;
    if v_code.status = 'approved' then
        update public.device_codes as d
        set status = 'consumed',
            consumed_at = v_now,
            last_polled_at = v_now
        where d.id = v_code.id;
        return private.token_grant_ok(
            p_clerk_user_id => v_code.clerk_user_id,
            p_clerk_org_id => v_code.clerk_org_id,
            p_email => v_code.email,
            p_device_code_id => v_code.id
        );
    end if;

    -- Pending: too soon after the last poll is slow_down, and the interval
    -- grows by 5 seconds for this and every later poll (RFC 8628 3.5).
    if v_code.last_polled_at is not null
        and v_now < v_code.last_polled_at + pg_catalog.make_interval(secs => v_code.interval_seconds) then
        update public.device_codes as d
        set interval_seconds = least(d.interval_seconds + 5, 300),
            last_polled_at = v_now
        where d.id = v_code.id
        returning d.interval_seconds into v_code.interval_seconds;
        return private.token_grant_refusal(
            'slow_down', 'slow_down', p_interval_seconds => v_code.interval_seconds
        );
    end if;

    update public.device_codes as d
    set last_polled_at = v_now
    where d.id = v_code.id;
    return private.token_grant_refusal(
        'authorization_pending', 'authorization_pending', p_interval_seconds => v_code.interval_seconds
    );
end
$$;

revoke all on function public.poll_device_code(text, text)
from public, anon, authenticated, service_role;
grant execute on function public.poll_device_code(text, text)
to service_role;

comment on function public.poll_device_code(text, text) is
'The token endpoint''s device_code grant, as public.token_grant_result: ok with device_code_id, '
'clerk_user_id, clerk_org_id and email exactly once for an approved code (then consumed), else ok '
'false with error authorization_pending or slow_down (both with interval_seconds, slow_down''s '
'grown by 5), access_denied, expired_token (reason: the error again) or invalid_grant (reason '
'unknown_code, client_mismatch, already_used). service_role only.';


create function public.purge_expired_device_codes(p_retention interval default '1 day')
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_deleted integer;
begin
    if p_retention is null or p_retention < interval '0' then
        raise exception 'p_retention must be a non-negative interval'
            using errcode = '22023';
    end if;
    delete from public.device_codes as d
    where d.expires_at < pg_catalog.now() - p_retention;
    get diagnostics v_deleted = row_count;
    delete from public.device_code_attempts as a
    where a.window_started_at < pg_catalog.now() - interval '15 minutes' - p_retention;
    return v_deleted;
end
$$;

revoke all on function public.purge_expired_device_codes(interval)
from public, anon, authenticated, service_role;
grant execute on function public.purge_expired_device_codes(interval)
to service_role;

comment on function public.purge_expired_device_codes(interval) is
'Operations: deletes device codes expired more than p_retention ago (and stale guess counters) '
'and returns how many codes it deleted. Run it daily beside purge_expired_tokens. service_role only.';
