-- Hardening round 3 of the sign-in grants (issue 28; docs/security-model.md).
--
-- L10: a code approved before user.deleted redeems nothing after it, and a
--      deleted user's credentials spend nothing. user.deleted marks
--      users.deleted_at (migration clerk_webhook_sync) and revokes refresh
--      families, but an authorization or device code approved earlier still
--      redeemed, and an access token issued earlier (up to an hour) still
--      spent personal credits. consume_oauth_code and poll_device_code now
--      spend such a code and refuse with reason account_closed (the reason
--      rotate_refresh_token already gives, L3); the personal pool's opening
--      (shared by deduct_credits_pooled and grant_credits) refuses a
--      deduction with account_closed. The org pool needs nothing new: the
--      same event revokes every seat of the user.
--
-- R6: device codes resist guessing and phishing (RFC 8628 5.1, 5.4).
--      * creation is throttled: at most 30 codes a minute per client and 120
--        a minute in all (create_device_code refuses with SQLSTATE 54000);
--        so at most 120 * 10 = 1200 codes are pending at the default 10-minute
--        lifetime;
--      * wrong user codes are bounded beyond one account: besides 10 per user
--        in 15 minutes, at most 100 in 15 minutes in all (the table
--        device_code_guesses), after which every account is refused until
--        the window ends (rate_limited), so fresh accounts gain nothing;
--      * preview_device_code lets the device page name the client and when
--        the code was made; a wrong code there counts as a wrong guess.
--      The arithmetic (docs/security-model.md, R6): 20^8 = 2.56e10 user
--      codes; a given code lives 10 minutes, within at most two 15-minute
--      windows, so at most 200 guesses can be aimed at it: the chance of
--      guessing it is at most 200 / 2.56e10 = 7.8e-9.
--
-- Argument lists and result types of the existing public RPCs are unchanged;
-- preview_device_code and its result type public.device_code_preview are new.

-- L10 ------------------------------------------------------------------------

create function private.user_deleted(p_clerk_user_id text)
returns boolean
language sql
stable
set search_path = ''
as $$
    select exists (
        select 1
        from public.users as u
        where u.clerk_user_id = p_clerk_user_id and u.deleted_at is not null
    );
$$;

revoke all on function private.user_deleted(text)
from public, anon, authenticated, service_role;

comment on function private.user_deleted(text) is
'True when the Clerk user is marked deleted (users.deleted_at, set by user.deleted). A user '
'the database does not know is not deleted: the grant RPCs then behave as before (L10).';

create or replace function public.consume_oauth_code(
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
        -- L10: approved before user.deleted, redeemed after it: the code is
        -- spent (consumed above) and nothing is issued.
        if private.user_deleted(v_code.clerk_user_id) then
            return private.token_grant_refusal('invalid_grant', 'account_closed');
        end if;
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
'client_mismatch, redirect_uri_mismatch, pkce_mismatch, already_used, invalid_verifier or account_closed '
'(the user was deleted in Clerk after approving: the code is spent, L10). S256 is verified in the '
'statement that marks the code consumed. A redemption of an already consumed code revokes every '
'refresh-token family issued from it. service_role only.';

create or replace function public.poll_device_code(
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
        -- L10: approved before user.deleted: spent, and nothing is issued.
        if private.user_deleted(v_code.clerk_user_id) then
            return private.token_grant_refusal('invalid_grant', 'account_closed');
        end if;
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
'unknown_code, client_mismatch, already_used, account_closed: approved by a user deleted in Clerk '
'since, the code is then spent, L10). service_role only.';


create or replace function private.personal_pool_opening(
    p_clerk_user_id text,
    p_kind text,
    p_idempotency_key text,
    p_fingerprint text,
    p_context jsonb
)
returns private.personal_opening
language plpgsql
volatile
set search_path = ''
as $$
declare
    v private.personal_opening;
    v_deleted boolean;
begin
    select u.id, u.deleted_at is not null into v.user_id, v_deleted
    from public.users as u
    where u.clerk_user_id = p_clerk_user_id;
    if v.user_id is null then
        v.early := private.credit_refusal('personal', 'unknown_user');
        return v;
    end if;

    if p_idempotency_key is not null then
        v.early := private.idempotent_replay(
            'personal', v.user_id, p_idempotency_key, p_fingerprint, p_kind,
            case when p_kind = 'deduction' then v.user_id end
        );
    end if;

    -- L10: a deleted user's credentials (an access token still inside its
    -- hour) spend nothing; the retry of a deduction made before the event
    -- still replays it (nothing new moves).
    if v_deleted and p_kind = 'deduction' and v.early is null then
        v.early := private.credit_refusal('personal', 'account_closed');
        return v;
    end if;

    v.metadata := pg_catalog.jsonb_build_object(
        'pool', 'personal',
        'clerk_user_id', p_clerk_user_id,
        'context', p_context
    );
    return v;
end
$$;

revoke all on function private.personal_pool_opening(text, text, text, text, jsonb)
from public, anon, authenticated, service_role;

comment on function private.personal_pool_opening(text, text, text, text, jsonb) is
'Steps 2-3 of a personal-pool deduction or grant (p_kind): the user (user_id), an early '
'result (early: the unknown_user refusal, the replay of an earlier result for the key, or, for a '
'deduction by a user deleted in Clerk, the account_closed refusal (L10); '
'null to go on) and the ledger metadata {pool, clerk_user_id, context}.';

-- R6 -------------------------------------------------------------------------

create index device_codes_created_at_idx
on public.device_codes (created_at);

create index device_codes_client_created_at_idx
on public.device_codes (client_id, created_at);

create table public.device_code_guesses (
    id boolean primary key default true check (id),
    window_started_at timestamptz not null default now(),
    failures integer not null default 0 check (failures >= 0)
);

alter table public.device_code_guesses enable row level security;
revoke all on table public.device_code_guesses from public, anon, authenticated, service_role;

comment on table public.device_code_guesses is
'Wrong user codes entered by anyone in the current 15-minute window (one row): at 100 the '
'verification page refuses every code for every account until the window ends (R6; RFC 8628 '
'5.1). Written by decide_device_code and preview_device_code.';

insert into public.device_code_guesses (id) values (true);

create function private.device_guess_window()
returns public.device_code_guesses
language plpgsql
volatile
set search_path = ''
as $$
declare
    v public.device_code_guesses%rowtype;
begin
    -- Read (and roll over) the global window without taking the row lock:
    -- only a wrong guess writes it (private.count_device_guess).
    select g.* into v from public.device_code_guesses as g where g.id;
    if v.window_started_at <= pg_catalog.now() - interval '15 minutes' then
        update public.device_code_guesses as g
        set window_started_at = pg_catalog.now(), failures = 0
        where g.id and g.window_started_at <= pg_catalog.now() - interval '15 minutes'
        returning g.* into v;
        if not found then
            select g.* into v from public.device_code_guesses as g where g.id;
        end if;
    end if;
    return v;
end
$$;

revoke all on function private.device_guess_window()
from public, anon, authenticated, service_role;

comment on function private.device_guess_window() is
'The global wrong-guess window of device user codes (R6), renewed when 15 minutes have passed.';


create function private.device_guess_refusal(p_clerk_user_id text)
returns timestamptz
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_attempts public.device_code_attempts%rowtype;
    v_global public.device_code_guesses%rowtype;
begin
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
        return v_attempts.window_started_at + interval '15 minutes';
    end if;
    -- Everyone's guesses (R6): 100 in 15 minutes, and no account may try.
    v_global := private.device_guess_window();
    if v_global.failures >= 100 then
        return v_global.window_started_at + interval '15 minutes';
    end if;
    return null;
end
$$;

revoke all on function private.device_guess_refusal(text)
from public, anon, authenticated, service_role;

comment on function private.device_guess_refusal(text) is
'When the user (10 wrong user codes in 15 minutes) or everyone (100, R6) has guessed too '
'often: the time a new guess may be made; null when a guess may be made now.';


create function private.count_device_guess(p_clerk_user_id text)
returns void
language sql
volatile
set search_path = ''
as $$
    update public.device_code_attempts as a
    set failures = a.failures + 1
    where a.clerk_user_id = p_clerk_user_id;
    update public.device_code_guesses as g
    set failures = g.failures + 1
    where g.id;
$$;

revoke all on function private.count_device_guess(text)
from public, anon, authenticated, service_role;

comment on function private.count_device_guess(text) is
'Counts one wrong user code for the user and for everyone (R6).';


create or replace function public.create_device_code(
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

    -- R6: creation is throttled. The lock makes the two counts exact under
    -- concurrency (creation is rare: one per headless sign-in).
    perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('device_codes:create', 0));
    if (
        select pg_catalog.count(*) from public.device_codes as d
        where d.client_id = p_client_id and d.created_at > pg_catalog.now() - interval '1 minute'
    ) >= 30 then
        raise exception 'device codes are created too fast for this client (30 a minute)'
            using errcode = '54000', hint = 'Retry in a minute.';
    end if;
    if (
        select pg_catalog.count(*) from public.device_codes as d
        where d.created_at > pg_catalog.now() - interval '1 minute'
    ) >= 120 then
        raise exception 'device codes are created too fast (120 a minute in all)'
            using errcode = '54000', hint = 'Retry in a minute.';
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

comment on function public.create_device_code(text, text, text, integer, integer) is
'Stores a pending device authorization by its two hashes and returns its expiry (at most 30 '
'minutes). A user-code hash already stored (a collision): 23505, the caller draws another code. '
'More than 30 codes a minute for the client, or 120 in all: 54000 (R6, retry later). '
'Bad input: 22023 naming the argument. service_role only.';


create or replace function public.decide_device_code(
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
    v_retry_at timestamptz;
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

    v_retry_at := private.device_guess_refusal(p_clerk_user_id);
    if v_retry_at is not null then
        return row(false, 'rate_limited', null, null, v_retry_at)::public.device_decision_result;
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
        perform private.count_device_guess(p_clerk_user_id);
        return row(false, 'unknown_code', null, null, null)::public.device_decision_result;
    end if;

    return row(
        false, case when v_code.status <> 'pending' then 'already_decided' else 'expired' end,
        null, null, null
    )::public.device_decision_result;
end
$$;

comment on function public.decide_device_code(text, text, boolean, text, text) is
'The signed-in user approves (with the chosen org, null = Personal) or denies the pending device '
'authorization of a user code, as public.device_decision_result: ok with status and client_id, or ok '
'false with reason unknown_code (counted as a wrong guess), expired, already_decided or '
'rate_limited (10 wrong guesses by the user, or 100 by everyone, in 15 minutes: R6; with '
'retry_at). The issuer checks membership and seat before approving. service_role only.';


create type public.device_code_preview as (
    ok boolean,
    reason text,
    client_id text,
    created_at timestamptz,
    expires_at timestamptz,
    retry_at timestamptz
);

comment on type public.device_code_preview is
'Result of preview_device_code. ok: a pending code; client_id, created_at and expires_at name '
'what the user is about to approve. Else reason: unknown_code (counted as a wrong guess), '
'expired, already_decided or rate_limited (with retry_at).';


create function public.preview_device_code(
    p_user_code_hash text,
    p_clerk_user_id text
)
returns public.device_code_preview
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_retry_at timestamptz;
    v_code public.device_codes%rowtype;
begin
    perform private.require_sha256_hex(p_user_code_hash, 'p_user_code_hash');
    perform private.require_token_text(p_clerk_user_id, 'p_clerk_user_id');

    -- The same guard as a decision: a preview must not be a free oracle.
    v_retry_at := private.device_guess_refusal(p_clerk_user_id);
    if v_retry_at is not null then
        return row(false, 'rate_limited', null, null, null, v_retry_at)::public.device_code_preview;
    end if;

    select d.*
    into v_code
    from public.device_codes as d
    where d.user_code_hash = p_user_code_hash;

    if not found then
        perform private.count_device_guess(p_clerk_user_id);
        return row(false, 'unknown_code', null, null, null, null)::public.device_code_preview;
    elsif v_code.status <> 'pending' then
        return row(false, 'already_decided', null, null, null, null)::public.device_code_preview;
    elsif v_code.expires_at <= pg_catalog.now() then
        return row(false, 'expired', null, null, null, null)::public.device_code_preview;
    end if;
    return row(
        true, null, v_code.client_id, v_code.created_at, v_code.expires_at, null
    )::public.device_code_preview;
end
$$;

revoke all on function public.preview_device_code(text, text)
from public, anon, authenticated, service_role;
grant execute on function public.preview_device_code(text, text)
to service_role;

comment on function public.preview_device_code(text, text) is
'What the device page shows before the user decides (R6, RFC 8628 5.4): the client that asked '
'and when the code was made, as public.device_code_preview. A wrong code counts as a wrong '
'guess, and the guess bounds of decide_device_code apply. service_role only.';
