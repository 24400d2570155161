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
-- Argument lists and result types of the public RPCs are unchanged.

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
