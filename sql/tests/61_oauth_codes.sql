-- PKCE authorization codes: S256 only, <= 10 minutes, bound to client and
-- redirect_uri, redeemed once; a second redemption revokes what the first issued.
-- SECURITY.md O1, O2, O3 (the concurrent half of O2 is py/tests/test_token_store_concurrency.py).
begin;
select plan(46);

-- RFC 7636 Appendix B: this verifier has this S256 challenge.
select
    'dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk' as verifier,
    'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM' as challenge,
    -- 128 characters, every allowed punctuation mark; challenge computed with Python's hashlib.
    repeat('Zz0-._~', 18) || 'Zz' as long_verifier,
    'P-r5yeX4sIsDqHv68Xpcrc6yDtfeZoXabhSPSv2FkUk' as long_challenge,
    'vscode-extension' as client,
    'vscode://softcodes.vscode/auth-callback' as redirect,
    encode(sha256(convert_to('code-a', 'UTF8')), 'hex') as code_a,
    encode(sha256(convert_to('code-b', 'UTF8')), 'hex') as code_b,
    encode(sha256(convert_to('code-expired', 'UTF8')), 'hex') as code_expired,
    encode(sha256(convert_to('code-long', 'UTF8')), 'hex') as code_long,
    encode(sha256(convert_to('code-replayed', 'UTF8')), 'hex') as code_replayed,
    encode(sha256(convert_to('code-other', 'UTF8')), 'hex') as code_other,
    encode(sha256(convert_to('code-unknown', 'UTF8')), 'hex') as code_unknown,
    encode(sha256(convert_to('refresh-1', 'UTF8')), 'hex') as rt_1,
    encode(sha256(convert_to('refresh-2', 'UTF8')), 'hex') as rt_2,
    encode(sha256(convert_to('refresh-3', 'UTF8')), 'hex') as rt_3,
    encode(sha256(convert_to('refresh-4', 'UTF8')), 'hex') as rt_4,
    encode(sha256(convert_to('refresh-5', 'UTF8')), 'hex') as rt_5
\gset

select is(
    private.pkce_s256(:'verifier'),
    :'challenge',
    'S256 is base64url(sha256(verifier)) without padding (RFC 7636 Appendix B)'
);

-- Creating ------------------------------------------------------------------

select tests.act_as_service_role();

select is(
    create_oauth_code(
        :'code_a', 'user_alice', :'client', :'redirect', :'challenge', 'S256', 'org_acme',
        p_email => 'alice@example.com'
    ),
    now() + interval '10 minutes',
    'a code lives 10 minutes by default'
);
select is(
    create_oauth_code(:'code_b', 'user_alice', :'client', :'redirect', :'challenge', p_ttl_seconds => 60),
    now() + interval '60 seconds',
    'a shorter lifetime can be asked for'
);
select throws_ok(
    format(
        $$select create_oauth_code(%L, 'user_alice', %L, %L, %L, 'plain')$$,
        :'code_other', :'client', :'redirect', :'verifier'
    ),
    '22023',
    'p_code_challenge_method must be S256 (plain and other methods are refused)',
    'O1: the plain method is refused'
);
select throws_ok(
    format(
        $$select create_oauth_code(%L, 'user_alice', %L, %L, %L, 's256')$$,
        :'code_other', :'client', :'redirect', :'challenge'
    ),
    '22023',
    null,
    'the method name is exact'
);
select throws_ok(
    format(
        $$select create_oauth_code(%L, 'user_alice', %L, %L, %L, null)$$,
        :'code_other', :'client', :'redirect', :'challenge'
    ),
    '22023',
    null,
    'a missing method is not taken to mean plain'
);
select throws_ok(
    format(
        $$select create_oauth_code(%L, 'user_alice', %L, %L, %L)$$,
        :'code_other', :'client', :'redirect', :'challenge' || '='
    ),
    '22023',
    'p_code_challenge must be base64url(sha256(code_verifier)) without padding (43 characters)',
    'a padded challenge is refused'
);
select throws_ok(
    format(
        $$select create_oauth_code(%L, 'user_alice', %L, %L, %L)$$,
        :'code_other', :'client', :'redirect', translate(:'challenge', '-', '+')
    ),
    '22023',
    null,
    'a challenge in standard (not url-safe) base64 is refused'
);
select throws_ok(
    format(
        $$select create_oauth_code(%L, 'user_alice', %L, %L, null)$$,
        :'code_other', :'client', :'redirect'
    ),
    '22023',
    null,
    'O1: a code without a challenge is refused'
);
select throws_ok(
    format(
        $$select create_oauth_code(%L, 'user_alice', %L, %L, %L, p_ttl_seconds => 601)$$,
        :'code_other', :'client', :'redirect', :'challenge'
    ),
    '22023',
    'p_ttl_seconds must be between 1 and 600',
    'O3: a code cannot live longer than 10 minutes'
);
select throws_ok(
    format(
        $$select create_oauth_code(%L, 'user_alice', %L, %L, %L, p_ttl_seconds => 0)$$,
        :'code_other', :'client', :'redirect', :'challenge'
    ),
    '22023',
    null,
    'nor zero seconds'
);
select throws_ok(
    format(
        $$select create_oauth_code('raw-code', 'user_alice', %L, %L, %L)$$,
        :'client', :'redirect', :'challenge'
    ),
    '22023',
    null,
    'a raw code instead of its hash is refused'
);
select throws_ok(
    format(
        $$select create_oauth_code(%L, 'user_alice', %L, %L, %L)$$,
        :'code_a', :'client', :'redirect', :'challenge'
    ),
    '23505',
    null,
    'a code hash is stored once'
);

-- The table itself carries the invariants, whoever writes to it.
select tests.reset_role();
select throws_ok(
    format(
        $$insert into oauth_codes (code_hash, clerk_user_id, client_id, redirect_uri, code_challenge, expires_at)
          values (%L, 'user_alice', 'c', 'r', %L, now() + interval '11 minutes')$$,
        :'code_other', :'challenge'
    ),
    '23514',
    null,
    'O3: the table refuses a code living longer than 10 minutes'
);
select throws_ok(
    format(
        $$insert into oauth_codes (code_hash, clerk_user_id, client_id, redirect_uri, code_challenge,
              code_challenge_method, expires_at)
          values (%L, 'user_alice', 'c', 'r', %L, 'plain', now() + interval '1 minute')$$,
        :'code_other', :'challenge'
    ),
    '23514',
    null,
    'O1: the table refuses the plain method'
);
select throws_ok(
    format(
        $$insert into oauth_codes (code_hash, clerk_user_id, client_id, redirect_uri, expires_at)
          values (%L, 'user_alice', 'c', 'r', now() + interval '1 minute')$$,
        :'code_other'
    ),
    '23502',
    null,
    'O1: the table refuses a code without a challenge'
);

-- Refusals that leave the code redeemable -------------------------------------

select tests.act_as_service_role();

select is(
    jsonb_strip_nulls(to_jsonb(consume_oauth_code(:'code_a', 'another-client', :'redirect', :'verifier'))),
    '{"ok": false, "error": "invalid_grant", "reason": "client_mismatch"}'::jsonb,
    'O3: another client cannot redeem the code'
);
select is(
    (consume_oauth_code(:'code_a', :'client', :'redirect' || '/', :'verifier')).reason,
    'redirect_uri_mismatch',
    'O3: the redirect_uri must match exactly'
);
select is(
    (consume_oauth_code(:'code_a', :'client', :'redirect', :'long_verifier')).reason,
    'pkce_mismatch',
    'a well-formed but wrong verifier fails S256'
);
select is(
    (consume_oauth_code(:'code_a', :'client', :'redirect', :'challenge')).reason,
    'pkce_mismatch',
    'O1: the challenge itself is no verifier (no silent plain)'
);
select is(
    (consume_oauth_code(:'code_a', :'client', :'redirect', left(:'verifier', 42))).reason,
    'invalid_verifier',
    'O1: a verifier of 42 characters is malformed'
);
select is(
    (consume_oauth_code(:'code_a', :'client', :'redirect', :'long_verifier' || 'a')).reason,
    'invalid_verifier',
    'O1: a verifier of 129 characters is malformed'
);
select is(
    (consume_oauth_code(:'code_a', :'client', :'redirect', translate(:'verifier', '-', '+'))).reason,
    'invalid_verifier',
    'O1: a verifier with a character outside [A-Za-z0-9-._~] is malformed'
);
select is(
    (consume_oauth_code(:'code_a', :'client', :'redirect', null)).reason,
    'invalid_verifier',
    'O1: a missing verifier is refused'
);
select is(
    jsonb_strip_nulls(to_jsonb(consume_oauth_code(:'code_unknown', :'client', :'redirect', :'verifier'))),
    '{"ok": false, "error": "invalid_grant", "reason": "unknown_code"}'::jsonb,
    'an unknown code is refused'
);
select tests.reset_role();
select is(
    (select consumed_at from oauth_codes where code_hash = :'code_a'),
    null,
    'none of these refusals burned the code'
);
select id as code_a_id from oauth_codes where code_hash = :'code_a'
\gset

-- Redeeming -------------------------------------------------------------------

select tests.act_as_service_role();
select is(
    jsonb_strip_nulls(to_jsonb(consume_oauth_code(:'code_a', :'client', :'redirect', :'verifier'))),
    jsonb_build_object(
        'ok', true,
        'code_id', :'code_a_id'::uuid,
        'clerk_user_id', 'user_alice',
        'clerk_org_id', 'org_acme',
        'email', 'alice@example.com'
    ),
    'the right client, redirect_uri and verifier redeem the code (and hand back the email)'
);
select is(
    jsonb_strip_nulls(to_jsonb(consume_oauth_code(:'code_a', :'client', :'redirect', :'verifier'))),
    '{"ok": false, "error": "invalid_grant", "reason": "already_used"}'::jsonb,
    'O2: the code cannot be redeemed twice'
);
select is(
    (consume_oauth_code(:'code_b', :'client', :'redirect', :'verifier')).clerk_org_id,
    null,
    'a code without an org redeems to a personal grant'
);

select tests.reset_role();
select create_oauth_code(:'code_long', 'user_alice', :'client', :'redirect', :'long_challenge');
select tests.act_as_service_role();
select is(
    (consume_oauth_code(:'code_long', :'client', :'redirect', :'long_verifier')).ok,
    true,
    'O1: a 128-character verifier with every allowed punctuation mark is accepted'
);

select tests.reset_role();
select create_oauth_code(:'code_expired', 'user_alice', :'client', :'redirect', :'challenge');
update oauth_codes
set created_at = now() - interval '11 minutes', expires_at = now() - interval '1 minute'
where code_hash = :'code_expired';
select tests.act_as_service_role();
select is(
    (consume_oauth_code(:'code_expired', :'client', :'redirect', :'verifier')).reason,
    'expired',
    'O3: an expired code is refused'
);

-- A second redemption revokes what the first issued (O2) -------------------------

select create_oauth_code(:'code_replayed', 'user_alice', :'client', :'redirect', :'challenge', 'S256', 'org_acme');
select (consume_oauth_code(:'code_replayed', :'client', :'redirect', :'verifier')).code_id as replayed_code_id
\gset
select
    issue_refresh_token(
        :'rt_1', 'user_alice', :'client', now() + interval '30 days', 'org_acme', :'replayed_code_id'
    ) as replayed_family
\gset
select is(
    (rotate_refresh_token(:'rt_1', :'rt_2', :'client', now() + interval '30 days')).ok,
    true,
    'the grant from the code is in use: its refresh token was rotated once'
);
select tests.reset_role();
select is(
    (select oauth_code_id from refresh_tokens where token_hash = :'rt_2'),
    :'replayed_code_id'::uuid,
    'the rotated token still points at the code its family came from'
);

-- Another grant of the same user, from another code, must survive.
select tests.act_as_service_role();
select create_oauth_code(:'code_other', 'user_alice', :'client', :'redirect', :'challenge');
select (consume_oauth_code(:'code_other', :'client', :'redirect', :'verifier')).code_id as other_code_id
\gset
select issue_refresh_token(:'rt_3', 'user_alice', :'client', now() + interval '30 days', null, :'other_code_id');

select is(
    (consume_oauth_code(:'code_replayed', :'client', :'redirect', :'verifier')).reason,
    'already_used',
    'O2: the replayed code is refused'
);
select tests.reset_role();
select results_eq(
    format(
        'select token_hash, revoked_reason from refresh_tokens where family_id = %L order by created_at, token_hash',
        :'replayed_family'
    ),
    format('values (%L, %L), (%L, %L)', :'rt_1', 'code_replayed', :'rt_2', 'code_replayed'),
    'O2: every token of the family issued from the code is revoked, the live one included'
);
select isnt(
    (select replayed_at from oauth_codes where code_hash = :'code_replayed'),
    null,
    'the code records that it was replayed'
);
select is(
    (select revoked_at from refresh_tokens where token_hash = :'rt_3'),
    null,
    'a grant from another code is untouched'
);
select tests.act_as_service_role();
select is(
    (rotate_refresh_token(:'rt_2', :'rt_4', :'client', now() + interval '30 days')).reason,
    'revoked',
    'the revoked family cannot be refreshed'
);
select issue_refresh_token(:'rt_5', 'user_alice', :'client', now() + interval '30 days', null, :'replayed_code_id');
select is(
    (rotate_refresh_token(:'rt_5', :'rt_4', :'client', now() + interval '30 days')).reason,
    'revoked',
    'O2: a refresh token stored for a replayed code is born revoked (the first redemption may store it late)'
);
select is(
    (consume_oauth_code(:'code_other', :'client', :'redirect', left(:'long_verifier', 43))).reason,
    'already_used',
    'a replay counts whatever verifier it carries'
);
select tests.reset_role();
select isnt(
    (select revoked_at from refresh_tokens where token_hash = :'rt_3'),
    null,
    'and it revokes that code''s grant too'
);

-- issue_refresh_token only links a redeemed code of the same user and client.
select create_oauth_code(:'code_unknown', 'user_alice', :'client', :'redirect', :'challenge');
select id as fresh_code_id from oauth_codes where code_hash = :'code_unknown'
\gset
select tests.act_as_service_role();
select throws_ok(
    format(
        $$select issue_refresh_token(%L, 'user_alice', %L, now() + interval '30 days', null, %L)$$,
        :'rt_4', :'client', :'fresh_code_id'
    ),
    '22023',
    'p_oauth_code_id must name a redeemed authorization code of this user and client',
    'a code that was not redeemed cannot start a family'
);
select tests.act_as_service_role();
select consume_oauth_code(:'code_unknown', :'client', :'redirect', :'verifier');
select throws_ok(
    format(
        $$select issue_refresh_token(%L, 'user_mallory', %L, now() + interval '30 days', null, %L)$$,
        :'rt_4', :'client', :'fresh_code_id'
    ),
    '22023',
    null,
    'another user''s code cannot start a family'
);
select throws_ok(
    format(
        $$select issue_refresh_token(%L, 'user_alice', 'another-client', now() + interval '30 days', null, %L)$$,
        :'rt_4', :'fresh_code_id'
    ),
    '22023',
    null,
    'another client''s code cannot start a family'
);
select isnt(
    issue_refresh_token(:'rt_4', 'user_alice', :'client', now() + interval '30 days', null, :'fresh_code_id'),
    null,
    'a freshly redeemed code of this user and client does'
);

-- Purging (operations) ---------------------------------------------------------

select tests.reset_role();
update oauth_codes
set created_at = now() - interval '8 days', expires_at = now() - interval '8 days' + interval '1 minute'
where code_hash = :'code_expired';
select tests.act_as_service_role();
select is(
    ((purge_expired_tokens()).oauth_codes)::int,
    1,
    'purge deletes codes expired longer than the retention'
);

select * from finish();
rollback;
