-- H4: holds are bounded, so one member cannot make a pool unavailable to the
-- others. Seen before (issue 28): a member authorized the whole available
-- balance with a TTL of an hour (everyone else: insufficient_credits for an
-- hour, and a void costs nothing), and opened 50 live holds in 0.1 s.
-- The bounds (private.hold_limits, defaults): a hold lives at most 15
-- minutes; a seat (or a personal user) has at most 8 live holds; on a pool
-- another active seat may spend, one seat's live holds together reserve at
-- most half its balance. Refusals are values and write nothing.
begin;
select plan(26);

select tests.create_org('org_acme', 'Acme', 'cus_acme');
select tests.create_subscription('org_acme', 'active', 100);
select tests.create_seat('org_acme', 'user_alice', 'member', 'active');
select tests.create_seat('org_acme', 'user_bob', 'member', 'active');
select tests.create_user('user_solo', p_personal_credits => 100);
select tests.create_org('org_one', 'One', 'cus_one');
select tests.create_subscription('org_one', 'active', 10);
select tests.create_seat('org_one', 'user_only', 'owner', 'active');

-- The attack as seen: the whole balance, for an hour --------------------------------

select results_eq(
    $$ select ok, reason from public.authorize_credits(
        'user_alice', 10, 'an hour', 'org_acme', null, '{}', '1 hour') $$,
    $$ values (false, 'hold_ttl_too_long') $$,
    'H4: a hold of an hour is refused (hold_ttl_too_long: at most 15 minutes)'
);
select results_eq(
    $$ select ok, reason, available from public.authorize_credits(
        'user_alice', 100, 'all of it', 'org_acme') $$,
    $$ values (false, 'hold_too_large', 50::numeric) $$,
    'H4: the whole balance of a shared pool is refused (hold_too_large; available = 50, the most allowed)'
);
select is(
    (select count(*)::int from public.credit_holds), 0,
    'H4: refusals write no hold'
);
select results_eq(
    $$ select ok from public.authorize_credits(
        'user_alice', 5, '15 minutes', 'org_acme', null, '{}', '15 minutes') $$,
    $$ values (true) $$,
    'H4: a hold of 15 minutes is accepted'
);

-- One seat's holds together: at most half the pool ---------------------------------

select results_eq(
    $$ select ok from public.authorize_credits('user_alice', 30, 'big stream', 'org_acme') $$,
    $$ values (true) $$,
    'H4: alice holds 30 more (35 of the 50 a seat may hold)'
);
select results_eq(
    $$ select ok, reason, available from public.authorize_credits(
        'user_alice', 20, 'one more', 'org_acme') $$,
    $$ values (false, 'hold_too_large', 15::numeric) $$,
    'H4: her live holds with this one would pass half the pool: refused, 15 still allowed'
);
select results_eq(
    $$ select ok from public.authorize_credits('user_alice', 15, 'up to half', 'org_acme') $$,
    $$ values (true) $$,
    'H4: up to exactly half is accepted'
);
select results_eq(
    $$ select ok, amount, available from public.authorize_credits(
        'user_bob', 50, 'the other half', 'org_acme') $$,
    $$ values (true, 50::numeric, 0::numeric) $$,
    'H4: the pool stays available to the others: bob holds the other half'
);
select results_eq(
    $$ select ok, reason, available from public.authorize_credits(
        'user_bob', 1, 'past half', 'org_acme') $$,
    $$ values (false, 'hold_too_large', 0::numeric) $$,
    'H4: bob is bounded the same way'
);

-- Live holds per seat: at most 8 ----------------------------------------------------

select is(
    (
        select count(*)::int
        from public.credit_holds as h
        cross join lateral public.void_hold(h.id, 'user_alice') as v
        where
            h.user_id = (select u.id from public.users as u where u.clerk_user_id = 'user_alice')
            and v.ok
    ),
    3,
    'H4: alice voids her three holds'
);
select is(
    (
        select count(*)::int
        from generate_series(1, 8) as g
        cross join lateral public.authorize_credits('user_alice', 1, 'small stream ' || g, 'org_acme') as a
        where a.ok
    ),
    8,
    'H4: eight live holds of one seat'
);
select results_eq(
    $$ select ok, reason from public.authorize_credits('user_alice', 1, 'ninth', 'org_acme') $$,
    $$ values (false, 'too_many_holds') $$,
    'H4: the ninth live hold of the seat is refused (too_many_holds)'
);
update public.credit_holds set expires_at = now() - interval '1 second'
where id = (
        select id from public.credit_holds
        where state = 'held' and description like 'small stream %'
        order by created_at limit 1
    );
select results_eq(
    $$ select ok from public.authorize_credits('user_alice', 1, 'after an expiry', 'org_acme') $$,
    $$ values (true) $$,
    'H4: an expired hold no longer counts (not swept yet): the next one is accepted'
);
select results_eq(
    $$ select ok, reason from public.authorize_credits('user_alice', 1, 'again', 'org_acme') $$,
    $$ values (false, 'too_many_holds') $$,
    'H4: and the bound applies again'
);
select results_eq(
    $$ select ok, reason, replayed from public.authorize_credits(
        'user_alice', 1, 'small stream', 'org_acme', 'key-1') $$,
    $$ values (false, 'too_many_holds', false) $$,
    'H4: a keyed request is bounded the same way'
);

-- The personal pool, and an org nobody else spends -------------------------------------

select results_eq(
    $$ select ok, amount from public.authorize_credits('user_solo', 100, 'my own pool') $$,
    $$ values (true, 100::numeric) $$,
    'H4: a personal pool is the user''s alone: no share bound'
);
select results_eq(
    $$ select ok, reason from public.authorize_credits(
        'user_solo', 1, 'too long', null, null, '{}', '16 minutes') $$,
    $$ values (false, 'hold_ttl_too_long') $$,
    'H4: personal holds live at most 15 minutes too'
);
select tests.create_user('user_many', p_personal_credits => 100);
select is(
    (
        select count(*)::int
        from generate_series(1, 9) as g
        cross join lateral public.authorize_credits('user_many', 1, 'personal stream ' || g) as a
        where a.ok
    ),
    8,
    'H4: at most 8 live personal holds per user (of 9 tries)'
);
select results_eq(
    $$ select ok, amount from public.authorize_credits('user_only', 10, 'all of it', 'org_one') $$,
    $$ values (true, 10::numeric) $$,
    'H4: the only active seat of an org may hold its whole pool (nobody else to starve)'
);

-- Configurable -----------------------------------------------------------------

update private.hold_limits
set max_live_holds = 20, max_hold_amount = 3, max_held_share = 1, max_ttl = interval '1 hour';
select results_eq(
    $$ select ok from public.authorize_credits(
        'user_alice', 1, 'a tenth, for an hour', 'org_acme', null, '{}', '1 hour') $$,
    $$ values (true) $$,
    'H4: the bounds are the row of private.hold_limits: more holds, an hour'
);
select results_eq(
    $$ select ok, reason, available from public.authorize_credits(
        'user_alice', 4, 'above the absolute bound', 'org_acme') $$,
    $$ values (false, 'hold_too_large', 3::numeric) $$,
    'H4: max_hold_amount bounds one hold absolutely (available = 3)'
);
select results_eq(
    $$ select ok, reason, available from public.authorize_credits(
        'user_solo', 4, 'personal, above the absolute bound') $$,
    $$ values (false, 'hold_too_large', 3::numeric) $$,
    'H4: also on a personal pool'
);
select throws_ok(
    $$ update private.hold_limits set max_ttl = interval '2 hours' $$,
    '23514',
    null,
    'H4: the lifetime stays within the argument''s hard range (at most an hour)'
);
select throws_ok(
    $$ insert into private.hold_limits default values $$,
    '23505',
    null,
    'H4: one row of bounds'
);
select is(
    has_table_privilege('service_role', 'private.hold_limits', 'select')
    or has_table_privilege('authenticated', 'private.hold_limits', 'select')
    or has_table_privilege('anon', 'private.hold_limits', 'select'),
    false,
    'H4: no API role reads or writes the bounds (schema private, no grant)'
);
select is_empty(
    $$ select * from public.credit_consistency_check() $$,
    'H1 x H4: balances, ledger and held stay exact'
);

select * from finish();
rollback;
