-- Long-lived extension tokens: create / validate / revoke / list / rotate by hash (T7).
-- The issuer passes sha256-hex of each token; these tests hash made-up tokens the same way.
begin;
select plan(44);

select
    encode(sha256(convert_to('ext-token-a', 'UTF8')), 'hex') as h_a,
    encode(sha256(convert_to('ext-token-b', 'UTF8')), 'hex') as h_b,
    encode(sha256(convert_to('ext-token-c', 'UTF8')), 'hex') as h_c,
    encode(sha256(convert_to('ext-token-d', 'UTF8')), 'hex') as h_d,
    encode(sha256(convert_to('ext-token-e', 'UTF8')), 'hex') as h_e,
    encode(sha256(convert_to('ext-token-f', 'UTF8')), 'hex') as h_f,
    encode(sha256(convert_to('ext-token-unknown', 'UTF8')), 'hex') as h_unknown
\gset

-- Creating ------------------------------------------------------------------

select tests.act_as_service_role();

select create_extension_token('user_alice', :'h_a', 'Laptop', now() + interval '90 days', 'org_acme', 'jti-a') as id_a
\gset
select create_extension_token('user_alice', :'h_b', 'Desktop', now() + interval '30 days') as id_b
\gset
select create_extension_token('user_bob', :'h_c', 'Bob''s laptop', now() + interval '30 days') as id_c
\gset

select isnt(:'id_a'::uuid, null, 'the service role stores a token by hash and gets its id');

select throws_ok(
    format(
        $$select create_extension_token('user_alice', %L, 'Old', now() - interval '1 second')$$, :'h_d'
    ),
    '22023',
    'p_expires_at must be in the future',
    'a token that is already expired is refused'
);
select throws_ok(
    format($$select create_extension_token('user_alice', %L, '  ', now() + interval '1 day')$$, :'h_d'),
    '22023',
    'p_name is required',
    'a blank name is refused'
);
select throws_ok(
    $$select create_extension_token('user_alice', 'eyJhbGciOiJIUzI1NiJ9.raw.token', 'Raw', now() + interval '1 day')$$,
    '22023',
    'p_token_hash must be the lower-case hex SHA-256 of the secret (64 characters)',
    'a raw token instead of its hash is refused'
);
select throws_ok(
    format($$select create_extension_token('', %L, 'No user', now() + interval '1 day')$$, :'h_d'),
    '22023',
    'p_clerk_user_id is required',
    'a token needs an owner'
);
select throws_ok(
    format($$select create_extension_token('user_alice', %L, 'Again', now() + interval '1 day')$$, :'h_a'),
    '23505',
    null,
    'a hash can be stored once'
);
select throws_ok(
    format(
        $$select create_extension_token('user_alice', %L, 'Same jti', now() + interval '1 day', null, 'jti-a')$$,
        :'h_d'
    ),
    '23505',
    null,
    'a jti can be stored once'
);

-- Validating ----------------------------------------------------------------

select is(
    validate_extension_token(:'h_a'),
    row(
        true, null, :'id_a'::uuid, 'user_alice', 'org_acme', 'Laptop', now() + interval '90 days',
        'jti-a', now(), null,
        -- L5: the seat behind the org scope, in the same call (no seat here).
        'lost', 'no_active_seat', null, null
    )::public.extension_token_result,
    'a live token validates to its owner, org, name, expiry, jti and the start of its rotation chain'
);
select is(
    (validate_extension_token(:'h_b')).clerk_org_id,
    null,
    'a personal token validates with a null org'
);
select is(
    (validate_extension_token(:'h_b')).org_scope,
    null,
    'a personal token has no org scope to check'
);
select is(
    validate_extension_token(:'h_unknown'),
    row(false, 'unknown', null, null, null, null, null, null, null, null, null, null, null, null)
    ::public.extension_token_result,
    'an unknown hash does not validate: ok false, reason unknown, nothing else'
);
select throws_ok(
    $$select validate_extension_token('not-a-hash')$$,
    '22023',
    null,
    'validating something that is not a hash is an error, not a silent miss'
);

-- last_used_at is coarse: written on the first validation, then at most once a minute.
select tests.reset_role();
select is(
    (select last_used_at from extension_tokens where id = :'id_a'),
    now(),
    'validation records last_used_at the first time'
);
update extension_tokens set last_used_at = now() - interval '30 seconds' where id = :'id_a';
select tests.act_as_service_role();
select validate_extension_token(:'h_a');
select tests.reset_role();
select is(
    (select last_used_at from extension_tokens where id = :'id_a'),
    now() - interval '30 seconds',
    'a validation less than a minute after the last one writes nothing'
);
update extension_tokens set last_used_at = now() - interval '61 seconds' where id = :'id_a';
select tests.act_as_service_role();
select validate_extension_token(:'h_a');
select tests.reset_role();
select is(
    (select last_used_at from extension_tokens where id = :'id_a'),
    now(),
    'a validation more than a minute after the last one updates last_used_at'
);

-- An expired token no longer validates (T7 covers revoked and absent ones too).
select create_extension_token('user_alice', :'h_e', 'Short-lived', now() + interval '1 day') as id_e
\gset
update extension_tokens
set created_at = now() - interval '2 days', expires_at = now() - interval '1 day'
where id = :'id_e';
select tests.act_as_service_role();
select is(
    (validate_extension_token(:'h_e')).reason,
    'expired',
    'an expired token does not validate (reason expired)'
);

-- Listing -------------------------------------------------------------------

select tests.reset_role();
update extension_tokens set created_at = now() - interval '1 hour' where id = :'id_a';
select tests.act_as_service_role();

select results_eq(
    $$select t.name from list_extension_tokens('user_alice') as t$$,
    array['Desktop', 'Laptop', 'Short-lived'],
    'the list holds exactly the user''s tokens, newest first, expired included'
);
select is(
    (
        select array_agg(k order by k)
        from jsonb_object_keys((
                select to_jsonb(t) from list_extension_tokens('user_alice') as t order by t.created_at desc limit 1
            )) as k
    ),
    array['clerk_org_id', 'created_at', 'expires_at', 'id', 'last_used_at', 'name', 'revoked_at'],
    'each listed token carries exactly id, name, org and timestamps'
);
select ok(
    (
        select bool_and(strpos(t::text, :'h_a') = 0)
        from list_extension_tokens('user_alice') as t
    ),
    'the list never contains a hash'
);
select is_empty(
    $$select * from list_extension_tokens('user_nobody')$$,
    'a user without tokens gets an empty list'
);

-- Revoking ------------------------------------------------------------------

select is(
    revoke_extension_token(:'id_c', 'user_alice'),
    false,
    'a user cannot revoke another user''s token'
);
select ok((validate_extension_token(:'h_c')).ok, 'and that token still validates');
select is(revoke_extension_token(:'id_b', 'user_alice'), true, 'the owner revokes their token');
select is(
    (validate_extension_token(:'h_b')).reason,
    'revoked',
    'a revoked token does not validate although it was never expired (reason revoked)'
);
select is(revoke_extension_token(:'id_b', 'user_alice'), true, 'revoking twice is harmless');
select is(
    revoke_extension_token(gen_random_uuid(), 'user_alice'),
    false,
    'revoking an unknown token id answers false'
);
select isnt(
    (
        select t.revoked_at
        from list_extension_tokens('user_alice') as t
        where t.id = :'id_b'
    ),
    null,
    'the list shows the revocation'
);

-- Rotating ------------------------------------------------------------------

select r.*
from rotate_extension_token(:'h_a', :'h_d', now() + interval '90 days', 'org_other', 'jti-d') as r
\gset rotated_

select is(
    row(
        :'rotated_ok'::boolean, :'rotated_clerk_user_id'::text,
        :'rotated_clerk_org_id'::text, :'rotated_name'::text, :'rotated_expires_at'::timestamptz,
        :'rotated_jti'::text, :'rotated_chain_started_at'::timestamptz, :'rotated_replaced_id'::uuid
    ),
    row(
        true, 'user_alice'::text, 'org_other'::text, 'Laptop'::text,
        now() + interval '90 days', 'jti-d'::text, now(), :'id_a'::uuid
    ),
    'rotation keeps owner, name and chain start, takes the new org, expiry and jti, names the token it replaced'
);
select is(
    (validate_extension_token(:'h_a')).reason,
    'revoked',
    'the rotated token stops validating at once'
);
select is(
    (validate_extension_token(:'h_d')).id,
    :'rotated_id'::uuid,
    'its replacement validates'
);
select tests.reset_role();
select results_eq(
    format(
        'select revoked_at is not null, replaced_by from extension_tokens where id = %L',
        :'id_a'
    ),
    format('values (true, %L::uuid)', :'rotated_id'),
    'the old row is revoked and points at its replacement'
);
select tests.act_as_service_role();
select is(
    rotate_extension_token(:'h_a', :'h_f', now() + interval '90 days'),
    row(false, 'revoked', null, null, null, null, null, null, null, null, null, null, null, null)
    ::public.extension_token_result,
    'a token rotates once: a second rotation of it is refused (ok false, reason revoked, nothing else)'
);
select is(
    (rotate_extension_token(:'h_unknown', :'h_f', now() + interval '90 days')).reason,
    'unknown',
    'an unknown token cannot be rotated'
);
select is(
    (rotate_extension_token(:'h_e', :'h_f', now() + interval '90 days')).reason,
    'expired',
    'an expired token cannot be rotated'
);
select is(
    (rotate_extension_token(:'h_b', :'h_f', now() + interval '90 days')).reason,
    'revoked',
    'a revoked token cannot be rotated'
);
select is(
    (rotate_extension_token(:'h_d', :'h_f', now() + interval '90 days', null, null, 3600)).reason,
    'chain_expired',
    'L3: a replacement that would outlive the chain''s absolute lifetime is refused (reason chain_expired)'
);
select throws_ok(
    format($$select rotate_extension_token(%L, %L, now() + interval '1 day')$$, :'h_d', :'h_c'),
    '23505',
    null,
    'a rotation onto a hash that is already stored fails'
);
select ok(
    (validate_extension_token(:'h_d')).ok,
    'and the failed rotations left the old token valid (atomic)'
);
select throws_ok(
    format($$select rotate_extension_token(%L, %L, now() + interval '1 day')$$, :'h_d', :'h_d'),
    '22023',
    'p_new_token_hash must differ from p_old_token_hash',
    'a rotation onto the same hash is refused'
);
select throws_ok(
    format($$select rotate_extension_token(%L, %L, now() - interval '1 day')$$, :'h_d', :'h_f'),
    '22023',
    'p_new_expires_at must be in the future',
    'a rotation onto an expired token is refused'
);
select is(
    (rotate_extension_token(:'h_d', :'h_f', now() + interval '1 day')).clerk_org_id,
    null,
    'a rotation without an org gives a personal token (the issuer passes the re-checked org)'
);
select is(
    (
        select count(*)::int
        from list_extension_tokens('user_alice') as t
        where t.revoked_at is null and t.expires_at > now()
    ),
    1,
    'after two rotations the user has exactly one live token'
);

-- Purging (operations) ---------------------------------------------------------

select tests.reset_role();
update extension_tokens
set created_at = now() - interval '40 days', expires_at = now() - interval '30 days'
where id = :'id_e';
select tests.act_as_service_role();
select is(
    (purge_expired_tokens()).extension_tokens::int,
    1,
    'purge deletes tokens expired longer than the retention'
);
select is(
    (
        select count(*)::int
        from list_extension_tokens('user_alice') as t
        where t.id = :'id_e'
    ),
    0,
    'the purged token is gone, the recent ones stay'
);

select * from finish();
rollback;
