-- The device authorization grant's store (RFC 8628): hashes only, pending ->
-- approved/denied -> consumed once, slow_down, expiry, bounded user-code
-- guesses, service_role only. SECURITY.md R4 (the concurrent half of single
-- use is py/tests/test_device_grant.py).
begin;
select plan(56);

select
    'vscode-extension' as client,
    encode(sha256(convert_to('device-a', 'UTF8')), 'hex') as dc_a,
    encode(sha256(convert_to('user-a', 'UTF8')), 'hex') as uc_a,
    encode(sha256(convert_to('device-b', 'UTF8')), 'hex') as dc_b,
    encode(sha256(convert_to('user-b', 'UTF8')), 'hex') as uc_b,
    encode(sha256(convert_to('device-c', 'UTF8')), 'hex') as dc_c,
    encode(sha256(convert_to('user-c', 'UTF8')), 'hex') as uc_c,
    encode(sha256(convert_to('device-x', 'UTF8')), 'hex') as dc_x,
    encode(sha256(convert_to('user-x', 'UTF8')), 'hex') as uc_x
\gset

-- Privileges ----------------------------------------------------------------

select table_privs_are('public', t.name, r.role, array[]::name[], format('%s has no privilege on %s', r.role, t.name))
from (values ('device_codes'::name), ('device_code_attempts')) as t (name)
cross join (values ('anon'::name), ('authenticated'), ('service_role')) as r (role)
order by t.name, r.role;

select is_empty(
    $$select c.relname from pg_class as c
      where c.oid in ('public.device_codes'::regclass, 'public.device_code_attempts'::regclass)
          and not c.relrowsecurity$$,
    'D1: both tables have row level security enabled'
);

select
    function_privs_are(
        'public', f.name, f.args, g.role,
        case when g.role = 'service_role' then array['EXECUTE']::name[] else array[]::name[] end,
        format('%s %s execute %s', g.role, case when g.role = 'service_role' then 'may' else 'may not' end, f.name)
    )
from (
    values
    ('create_device_code'::name, array['text', 'text', 'text', 'integer', 'integer']::name[]),
    ('decide_device_code', array['text', 'text', 'boolean', 'text', 'text']::name[]),
    ('poll_device_code', array['text', 'text']::name[]),
    ('purge_expired_device_codes', array['interval']::name[])
) as f (name, args)
cross join (values ('anon'::name), ('authenticated'), ('service_role')) as g (role)
order by f.name, g.role;

select is_empty(
    $$select p.proname from pg_proc as p
      where p.pronamespace = 'public'::regnamespace
          and p.proname in ('create_device_code', 'decide_device_code', 'poll_device_code',
                            'purge_expired_device_codes')
          and (not p.prosecdef or not coalesce(p.proconfig @> array['search_path=""'], false)
               or obj_description(p.oid, 'pg_proc') is null)$$,
    'D2: the device RPCs are security definer, search_path empty, and commented'
);

select tests.act_as_user('user_alice');
select throws_ok(
    $$select public.decide_device_code(repeat('a', 64), 'user_alice', true)$$,
    '42501',
    null,
    'D3: a signed-in user cannot approve through the RPC directly'
);
select throws_ok(
    'select count(*) from public.device_codes',
    '42501',
    null,
    'D6: a signed-in user cannot read device_codes'
);

-- Creating ------------------------------------------------------------------

select tests.act_as_service_role();
select is(
    create_device_code(:'dc_a', :'uc_a', :'client'),
    now() + interval '10 minutes',
    'a device code lives 10 minutes by default'
);
select throws_ok(
    format($$select create_device_code(%L, %L, %L)$$, :'dc_x', :'uc_a', :'client'),
    '23505',
    null,
    'a user code hash already stored is a unique violation (the issuer draws another)'
);
select throws_ok(
    format($$select create_device_code(%L, %L, %L, p_ttl_seconds => 1801)$$, :'dc_x', :'uc_x', :'client'),
    '22023',
    'p_ttl_seconds must be between 1 and 1800',
    'at most 30 minutes'
);
select throws_ok(
    format($$select create_device_code('device-x', %L, %L)$$, :'uc_x', :'client'),
    '22023',
    'p_device_code_hash must be the lower-case hex SHA-256 of the secret (64 characters)',
    'T7: a raw device code is refused, hashes only'
);
select throws_ok(
    format($$select create_device_code(%L, %L, %L, p_interval_seconds => 0)$$, :'dc_x', :'uc_x', :'client'),
    '22023',
    'p_interval_seconds must be between 1 and 60',
    'the interval is at least a second'
);

-- Polling while pending: authorization_pending, then slow_down ---------------

select is(
    (poll_device_code(:'dc_a', :'client')).error,
    'authorization_pending',
    'the first poll of a pending code: authorization_pending'
);
select is(
    jsonb_strip_nulls(to_jsonb(poll_device_code(:'dc_a', :'client'))),
    '{"ok": false, "error": "slow_down", "reason": "slow_down", "interval_seconds": 10}'::jsonb,
    'a poll within the interval: slow_down, and the interval grows by 5 seconds (RFC 8628 3.5)'
);
select is(
    (poll_device_code(:'dc_a', :'client')).interval_seconds,
    '15',
    'it keeps growing while the client polls too fast'
);
select is(
    jsonb_strip_nulls(to_jsonb(poll_device_code(:'dc_a', 'someone-else'))),
    '{"ok": false, "error": "invalid_grant", "reason": "client_mismatch"}'::jsonb,
    'another client cannot poll the code'
);
select is(
    (poll_device_code(:'dc_x', :'client')).reason,
    'unknown_code',
    'an unknown device code is invalid_grant'
);

-- Approving, then redeeming once -----------------------------------------------

select is(
    jsonb_strip_nulls(to_jsonb(decide_device_code(:'uc_a', 'user_alice', true, 'org_acme', 'alice@example.com'))),
    jsonb_build_object('ok', true, 'status', 'approved', 'client_id', 'vscode-extension'),
    'the signed-in user approves with the org they chose'
);
select is(
    (decide_device_code(:'uc_a', 'user_mallory', false)).reason,
    'already_decided',
    'a decided code cannot be decided again, by anyone'
);
select is(
    jsonb_strip_nulls(to_jsonb(poll_device_code(:'dc_a', :'client'))) - 'device_code_id',
    '{"ok": true, "clerk_user_id": "user_alice", "clerk_org_id": "org_acme", "email": "alice@example.com"}'::jsonb,
    'the next poll gets the grant: user, chosen org and email'
);
select is(
    jsonb_strip_nulls(to_jsonb(poll_device_code(:'dc_a', :'client'))),
    '{"ok": false, "error": "invalid_grant", "reason": "already_used"}'::jsonb,
    'R4: a redeemed device code never works again'
);

-- Denying ------------------------------------------------------------------------

select create_device_code(:'dc_b', :'uc_b', :'client');
select is(
    (decide_device_code(:'uc_b', 'user_alice', false, 'org_acme')).status,
    'denied',
    'the user denies'
);
select is(
    jsonb_strip_nulls(to_jsonb(poll_device_code(:'dc_b', :'client'))),
    '{"ok": false, "error": "access_denied", "reason": "access_denied"}'::jsonb,
    'the client learns access_denied'
);
select tests.reset_role();
select is(
    (select clerk_org_id from device_codes where device_code_hash = :'dc_b'),
    null,
    'a denial records no org'
);

-- Expiry -----------------------------------------------------------------------

select tests.act_as_service_role();
select create_device_code(:'dc_c', :'uc_c', :'client');
select tests.reset_role();
update device_codes
set created_at = now() - interval '11 minutes', expires_at = now() - interval '1 minute'
where device_code_hash = :'dc_c';
select tests.act_as_service_role();
select is(
    (decide_device_code(:'uc_c', 'user_alice', true)).reason,
    'expired',
    'an expired code cannot be approved'
);
select is(
    jsonb_strip_nulls(to_jsonb(poll_device_code(:'dc_c', :'client'))),
    '{"ok": false, "error": "expired_token", "reason": "expired_token"}'::jsonb,
    'polling an expired code: expired_token'
);

-- Guessing user codes is bounded ---------------------------------------------------

select
    is(
        (decide_device_code(encode(sha256(convert_to('guess-' || n, 'UTF8')), 'hex'), 'user_guesser', true)).reason,
        'unknown_code',
        format('wrong guess %s is refused', n)
    )
from generate_series(1, 10) as n;
select create_device_code(:'dc_x', :'uc_x', :'client');
select is(
    (decide_device_code(:'uc_x', 'user_guesser', true)).reason,
    'rate_limited',
    'R4: after 10 wrong guesses in 15 minutes even a right code is refused'
);
select is(
    (decide_device_code(:'uc_x', 'user_bob', true)).ok,
    true,
    'another user is not affected'
);

select is(purge_expired_device_codes(), 0, 'nothing is purged within a day of expiry');
select tests.reset_role();
update device_codes set expires_at = now() - interval '2 days', created_at = now() - interval '2 days 10 minutes'
where device_code_hash = :'dc_c';
select tests.act_as_service_role();
select is(purge_expired_device_codes(), 1, 'a code expired more than a day ago is purged');
select tests.reset_role();
select is_empty(
    $$select a.attname from pg_attribute as a
      where a.attrelid = 'public.device_codes'::regclass
          and a.attnum > 0 and not a.attisdropped
          and a.attname ~ '(code|secret)$'$$,
    'T7: no column holds a raw code; only *_hash'
);

select * from finish();
rollback;
