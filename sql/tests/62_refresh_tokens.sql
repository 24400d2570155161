-- Refresh tokens: families, rotation, reuse detection, grace window, revocation.
-- SECURITY.md O4, O5, O7; O6 as a constraint here, under real concurrency in
-- py/tests/test_token_store_concurrency.py.
begin;
select plan(45);

select
    'vscode-extension' as client,
    encode(sha256(convert_to('rt-1', 'UTF8')), 'hex') as r1,
    encode(sha256(convert_to('rt-2', 'UTF8')), 'hex') as r2,
    encode(sha256(convert_to('rt-3', 'UTF8')), 'hex') as r3,
    encode(sha256(convert_to('rt-4', 'UTF8')), 'hex') as r4,
    encode(sha256(convert_to('rt-5', 'UTF8')), 'hex') as r5,
    encode(sha256(convert_to('rt-6', 'UTF8')), 'hex') as r6,
    encode(sha256(convert_to('rt-7', 'UTF8')), 'hex') as r7,
    encode(sha256(convert_to('rt-8', 'UTF8')), 'hex') as r8,
    encode(sha256(convert_to('rt-9', 'UTF8')), 'hex') as r9,
    encode(sha256(convert_to('rt-10', 'UTF8')), 'hex') as r10,
    encode(sha256(convert_to('rt-11', 'UTF8')), 'hex') as r11,
    encode(sha256(convert_to('rt-12', 'UTF8')), 'hex') as r12,
    encode(sha256(convert_to('rt-unknown', 'UTF8')), 'hex') as r_unknown
\gset

-- Issuing -------------------------------------------------------------------

select tests.act_as_service_role();
select
    issue_refresh_token(
        :'r1', 'user_alice', :'client', now() + interval '30 days', 'org_acme', p_email => 'alice@example.com'
    ) as f1
\gset

select isnt(:'f1'::uuid, null, 'issuing starts a new family and returns its id');
select throws_ok(
    format($$select issue_refresh_token(%L, 'user_alice', %L, now())$$, :'r12', :'client'),
    '22023',
    'p_expires_at must be in the future',
    'a refresh token must expire in the future'
);
select throws_ok(
    format($$select issue_refresh_token('raw-refresh-token', 'user_alice', %L, now() + interval '1 day')$$, :'client'),
    '22023',
    null,
    'a raw token instead of its hash is refused'
);
select throws_ok(
    format($$select issue_refresh_token(%L, 'user_alice', ' ', now() + interval '1 day')$$, :'r12'),
    '22023',
    'p_client_id is required',
    'a refresh token belongs to a client'
);
select throws_ok(
    format($$select issue_refresh_token(%L, 'user_alice', %L, now() + interval '1 day')$$, :'r1', :'client'),
    '23505',
    null,
    'a hash is stored once'
);

-- Rotating (O4) -----------------------------------------------------------------

select is(
    jsonb_strip_nulls(to_jsonb(rotate_refresh_token(:'r1', :'r2', :'client', now() + interval '30 days'))),
    jsonb_build_object(
        'ok', true,
        'family_id', :'f1'::uuid,
        'clerk_user_id', 'user_alice',
        'clerk_org_id', 'org_acme',
        'email', 'alice@example.com'
    ),
    'a live token rotates into its child, in the same family, for the same user, org and email'
);
select tests.reset_role();
select results_eq(
    format(
        $$select t.token_hash, t.family_id, p.token_hash, t.client_id, t.rotated_at is not null
          from refresh_tokens as t
          left join refresh_tokens as p on p.id = t.parent_id
          where t.family_id = %L
          order by t.parent_id nulls first$$,
        :'f1'
    ),
    format(
        $$values (%L, %L::uuid, null::text, %L, true), (%L, %L::uuid, %L, %L, false)$$,
        :'r1', :'f1', :'client', :'r2', :'f1', :'r1', :'client'
    ),
    'the old token is marked rotated and the new one is its child'
);

-- Reuse outside the grace window (O5) -----------------------------------------------

select tests.act_as_service_role();
select is(
    jsonb_strip_nulls(to_jsonb(rotate_refresh_token(:'r1', :'r3', :'client', now() + interval '30 days'))),
    '{"ok": false, "error": "invalid_grant", "reason": "reused", "family_revoked": true}'::jsonb,
    'O4: the rotated token stops working at once; presenting it again is reuse'
);
select tests.reset_role();
select results_eq(
    format(
        $$select token_hash, revoked_reason from refresh_tokens where family_id = %L order by parent_id nulls first$$,
        :'f1'
    ),
    format($$values (%L, 'reuse_detected'), (%L, 'reuse_detected')$$, :'r1', :'r2'),
    'O5: reuse revokes the whole family, the newest token included'
);
select is(
    (select count(*)::int from refresh_tokens where token_hash = :'r3'),
    0,
    'reuse issues nothing'
);
select tests.act_as_service_role();
select is(
    jsonb_strip_nulls(to_jsonb(rotate_refresh_token(:'r2', :'r3', :'client', now() + interval '30 days'))),
    '{"ok": false, "error": "invalid_grant", "reason": "revoked"}'::jsonb,
    'O5: the newest token of a revoked family no longer rotates'
);
select is(
    revoke_refresh_token(:'r2'),
    true,
    'revoking a token of an already revoked family is harmless'
);

-- Reuse inside the grace window -------------------------------------------------------

select issue_refresh_token(:'r3', 'user_alice', :'client', now() + interval '30 days') as f2
\gset
select rotate_refresh_token(:'r3', :'r4', :'client', now() + interval '30 days');
select is(
    jsonb_strip_nulls(to_jsonb(rotate_refresh_token(:'r3', :'r5', :'client', now() + interval '30 days', 10))),
    '{"ok": false, "error": "invalid_grant", "reason": "reused", "family_revoked": false}'::jsonb,
    'within the grace window a reuse is refused without revoking the family'
);
select tests.reset_role();
select results_eq(
    format(
        $$select token_hash from refresh_tokens
          where family_id = %L and rotated_at is null and revoked_at is null$$,
        :'f2'
    ),
    format($$values (%L)$$, :'r4'),
    'and it created no second branch: the child is still the only live token'
);
select tests.act_as_service_role();
select is(
    (rotate_refresh_token(:'r4', :'r5', :'client', now() + interval '30 days', 10)).ok,
    true,
    'the child keeps working'
);
select tests.reset_role();
update refresh_tokens set rotated_at = now() - interval '30 seconds' where token_hash = :'r3';
select tests.act_as_service_role();
select is(
    (rotate_refresh_token(:'r3', :'r6', :'client', now() + interval '30 days', 10)).family_revoked,
    true,
    'a reuse after the grace window revokes the family'
);
select tests.reset_role();
select is(
    (select count(*)::int from refresh_tokens where family_id = :'f2' and revoked_at is null),
    0,
    'every token of that family is revoked'
);
select tests.act_as_service_role();
select throws_ok(
    format($$select rotate_refresh_token(%L, %L, %L, now() + interval '1 day', 61)$$, :'r5', :'r6', :'client'),
    '22023',
    'p_grace_seconds must be between 0 and 60',
    'the grace window is at most a minute'
);
select throws_ok(
    format($$select rotate_refresh_token(%L, %L, %L, now() + interval '1 day', -1)$$, :'r5', :'r6', :'client'),
    '22023',
    null,
    'and never negative'
);

-- Other refusals --------------------------------------------------------------------

select issue_refresh_token(:'r7', 'user_bob', :'client', now() + interval '30 days') as f3
\gset
select is(
    jsonb_strip_nulls(to_jsonb(rotate_refresh_token(:'r_unknown', :'r12', :'client', now() + interval '30 days'))),
    '{"ok": false, "error": "invalid_grant", "reason": "unknown"}'::jsonb,
    'an unknown token is refused'
);
select is(
    (rotate_refresh_token(:'r7', :'r12', 'another-client', now() + interval '30 days')).reason,
    'client_mismatch',
    'a token issued to another client is refused'
);
select is(
    (rotate_refresh_token(:'r7', :'r12', :'client', now() + interval '30 days')).ok,
    true,
    'and that refusal did not spend it'
);
select issue_refresh_token(:'r8', 'user_bob', :'client', now() + interval '30 days') as f4
\gset
select tests.reset_role();
update refresh_tokens
set created_at = now() - interval '31 days', expires_at = now() - interval '1 day'
where token_hash = :'r8';
select tests.act_as_service_role();
select is(
    (rotate_refresh_token(:'r8', :'r11', :'client', now() + interval '30 days')).reason,
    'expired',
    'an expired token is refused'
);
select throws_ok(
    format($$select rotate_refresh_token(%L, %L, %L, now() + interval '1 day')$$, :'r12', :'r12', :'client'),
    '22023',
    'p_new_token_hash must differ from p_old_token_hash',
    'a token cannot rotate into itself'
);
select throws_ok(
    format($$select rotate_refresh_token(%L, %L, %L, now() - interval '1 day')$$, :'r12', :'r11', :'client'),
    '22023',
    'p_new_expires_at must be in the future',
    'the new token must expire in the future'
);
select throws_ok(
    format($$select rotate_refresh_token(%L, %L, %L, now() + interval '1 day')$$, :'r12', :'r1', :'client'),
    '23505',
    null,
    'a rotation onto a hash that is already stored fails'
);
select tests.reset_role();
select is(
    (select rotated_at from refresh_tokens where token_hash = :'r12'),
    null,
    'and the failed rotation left the old token live (atomic)'
);

-- O6 as a constraint: one live token per family, whoever writes.
select throws_ok(
    format(
        $$insert into refresh_tokens (token_hash, family_id, clerk_user_id, client_id, expires_at)
          values (%L, %L, 'user_bob', %L, now() + interval '1 day')$$,
        :'r11', :'f3', :'client'
    ),
    '23505',
    null,
    'O6: a family cannot hold two live tokens'
);

-- Revoking (RFC 7009, O7) -----------------------------------------------------------

select tests.act_as_service_role();
select issue_refresh_token(:'r9', 'user_carol', :'client', now() + interval '30 days', 'org_acme') as f5
\gset
select rotate_refresh_token(:'r9', :'r10', :'client', now() + interval '30 days');
select rotate_refresh_token(:'r10', :'r11', :'client', now() + interval '30 days');

select is(revoke_refresh_token(:'r_unknown'), false, 'O7: revoking an unknown token answers false (HTTP says 200)');
select is(revoke_refresh_token(:'r10'), true, 'O7: a known token is revoked');
select tests.reset_role();
select results_eq(
    format(
        $$select token_hash, rotated_at is not null, revoked_reason from refresh_tokens
          where family_id = %L order by token_hash$$,
        :'f5'
    ),
    format(
        $$select * from (values (%L, true, null::text), (%L, true, 'revoked'), (%L, false, 'revoked')) as v
          order by 1$$,
        :'r9', :'r10', :'r11'
    ),
    'O7: the token and its descendants are revoked; its rotated ancestor is left as it was'
);
select tests.act_as_service_role();
select is(
    (rotate_refresh_token(:'r11', :'r12', :'client', now() + interval '30 days')).reason,
    'revoked',
    'O7: the live descendant no longer rotates'
);
select is(
    (rotate_refresh_token(:'r9', :'r12', :'client', now() + interval '30 days')).reason,
    'reused',
    'the rotated ancestor presented again is still reuse'
);
select is(revoke_refresh_token(:'r10'), true, 'revoking twice is harmless');
select is(revoke_refresh_token(:'r12'), true, 'the live token of a family can be revoked');
select tests.reset_role();
select isnt(
    (select revoked_at from refresh_tokens where token_hash = :'r12'),
    null,
    'and it is'
);
select throws_ok(
    $$select revoke_refresh_token('raw-token')$$,
    '22023',
    null,
    'revocation takes a hash'
);
select is(
    (select count(*)::int from refresh_tokens where family_id = :'f5' and revoked_at is null and rotated_at is null),
    0,
    'the revoked family has no live token'
);

-- Families never share tokens and a family's owner never changes.
select is_empty(
    $$select family_id from refresh_tokens
      group by family_id
      having count(distinct clerk_user_id) > 1 or count(distinct client_id) > 1$$,
    'every family has one user and one client'
);
select is_empty(
    $$select c.id from refresh_tokens as c
      inner join refresh_tokens as p on c.parent_id = p.id
      where c.family_id <> p.family_id$$,
    'every child is in its parent''s family'
);

-- Purging (operations) ---------------------------------------------------------

select tests.act_as_service_role();
select is(
    jsonb_strip_nulls(to_jsonb(purge_expired_tokens(interval '7 days'))),
    '{"extension_tokens": 0, "oauth_codes": 0, "refresh_tokens": 0}'::jsonb,
    'a family expired for less than the retention is kept (reuse stays detectable)'
);
select is(
    ((purge_expired_tokens(interval '0 seconds')).refresh_tokens)::int,
    1,
    'purge deletes a family once its newest token expired longer ago than the retention'
);
select is(
    (rotate_refresh_token(:'r8', :'r11', :'client', now() + interval '30 days')).reason,
    'unknown',
    'a purged token is unknown'
);
select throws_ok(
    $$select purge_expired_tokens(interval '-1 day')$$,
    '22023',
    null,
    'the retention cannot be negative'
);
select tests.reset_role();
select is(
    (select count(*)::int from refresh_tokens where family_id in (:'f1', :'f2', :'f3', :'f5')),
    10,
    'families still alive, or revoked but not expired, are kept'
);

select * from finish();
rollback;
