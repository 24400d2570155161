-- H3: low-balance alerts. One alert per downward crossing, re-armed by a
-- grant; percentages of the last grant; settings under RLS; the outbox's
-- claim / complete (retries, never twice once delivered).
begin;
select plan(40);

select tests.create_rls_story();
-- org_acme: pool 100 - 2 (story) = 98; user_admin (admin), user_member.
create function tests.org_id_35(p_clerk_org_id text) returns uuid
language sql stable security definer set search_path = ''
as $$ select o.id from public.organizations as o where o.clerk_org_id = p_clerk_org_id $$;
grant execute on function tests.org_id_35(text) to anon, authenticated, service_role;
create function tests.alerts_35() returns table (threshold numeric, before numeric, after numeric)
language sql stable security definer set search_path = ''
as $$
    select a.threshold, a.balance_before, a.balance_after from public.low_balance_alerts as a
    order by a.created_at, a.id
$$;
grant execute on function tests.alerts_35() to anon, authenticated, service_role;

-- settings ----------------------------------------------------------------------------
select tests.act_as_user('user_admin');
select is(
    (public.set_low_balance_thresholds(tests.org_id_35('org_acme'), array[50, 20], array[10])).ok,
    true, 'H3: an admin sets absolute and percent thresholds'
);
select is(
    (public.set_low_balance_thresholds(tests.org_id_35('org_acme'), array[50, 20], array[10])).pool_thresholds,
    array[50, 20, 10]::numeric[],
    'H3: on the pool row as balances, highest first (10% of the last grant of 100 = 10)'
);
select is(
    (public.set_low_balance_webhook(tests.org_id_35('org_acme'), 'https://hooks.example.test/acme')).webhook_url,
    'https://hooks.example.test/acme', 'H3: an admin sets the org''s webhook URL'
);
select is(
    (public.set_low_balance_thresholds(tests.org_id_35('org_globex'), array[1], null)).reason,
    'not_an_admin', 'H3: not for another org'
);
select is(
    (public.set_low_balance_webhook(tests.org_id_35('org_globex'), 'https://evil.example.test')).reason,
    'not_an_admin', 'H3: nor its webhook'
);
select throws_ok(
    $$ select public.set_low_balance_webhook(tests.org_id_35('org_acme'), 'file:///etc/passwd') $$,
    '22023', 'p_url must be an https URL of a public host (refused: not_https)', 'H3: only https URLs (H6)'
);
select throws_ok(
    $$ select public.set_low_balance_thresholds(tests.org_id_35('org_acme'), null, array[101]) $$,
    '22023', 'p_percent must hold numbers > 0 and <= 100 with at most 4 decimals',
    'H3: a percentage above 100 is 22023'
);
select throws_ok(
    $$ select public.set_low_balance_thresholds(tests.org_id_35('org_acme'), array[0], null) $$,
    '22023', 'p_absolute must hold numbers > 0 and <= 1e12 with at most 4 decimals',
    'H3: a threshold of 0 is 22023'
);
select tests.act_as_user('user_member');
select is(
    (public.set_low_balance_thresholds(tests.org_id_35('org_acme'), null, null)).reason,
    'not_an_admin', 'H3: a member may not change thresholds'
);
select is_empty(
    $$ select * from public.low_balance_thresholds $$, 'H3: nor read them'
);
select tests.act_as_user('user_admin');
select results_eq(
    $$ select kind, value from public.low_balance_thresholds order by kind, value $$,
    $$ values ('absolute'::text, 20.0000::numeric(20, 4)), ('absolute', 50), ('percent', 10) $$,
    'H3: an admin reads their org''s thresholds'
);
select tests.act_as_anon();
select throws_ok(
    $$ select public.set_low_balance_thresholds(tests.org_id_35('org_acme'), null, null) $$,
    '42501', null, 'H3: anon may not call it'
);
select throws_ok(
    $$ select * from public.low_balance_alerts $$, '42501', null, 'H3: anon reads no alert'
);
select throws_ok(
    $$ select public.claim_low_balance_alerts() $$, '42501', null, 'H3: anon may not claim alerts'
);
select tests.act_as_user('user_admin');
select throws_ok(
    $$ select public.claim_low_balance_alerts() $$, '42501', null,
    'H3: nor may a signed-in admin (service role only)'
);
select tests.reset_role();

-- the crossing rule --------------------------------------------------------------
select is_empty($$ select * from tests.alerts_35() $$, 'H3: setting thresholds alerts nothing');
select is((public.deduct_credits_pooled('user_member', 40, 'to 58', 'org_acme')).ok, true, 'a debit to 58');
select is_empty($$ select * from tests.alerts_35() $$, 'H3: 98 -> 58 crosses nothing');
select is((public.deduct_credits_pooled('user_member', 8, 'to 50', 'org_acme')).ok, true, 'a debit to 50');
select is_empty($$ select * from tests.alerts_35() $$, 'H3: 58 -> 50 is not below 50 yet');
select is((public.deduct_credits_pooled('user_member', 1, 'to 49', 'org_acme')).ok, true, 'a debit to 49');
select results_eq(
    $$ select * from tests.alerts_35() $$,
    $$ values (50.0000::numeric, 50.0000::numeric, 49.0000::numeric) $$,
    'H3: 50 -> 49 crosses 50: one alert'
);
select is((public.deduct_credits_pooled('user_member', 1, 'to 48', 'org_acme')).ok, true, 'a debit to 48');
select is(
    (select count(*)::int from tests.alerts_35()), 1, 'H3: further debits below 50 write no more alerts'
);
select is((public.deduct_credits_pooled('user_member', 40, 'to 8', 'org_acme')).ok, true, 'a debit to 8');
select results_eq(
    $$ select threshold from tests.alerts_35() order by threshold desc $$,
    $$ values (50.0000::numeric), (20), (10) $$,
    'H3: one debit crossing two thresholds (20 and 10) writes one alert each'
);
select is(
    (public.deduct_credits_pooled('user_member', 9, 'refused', 'org_acme')).reason,
    'insufficient_credits', 'a refused debit'
);
select is((select count(*)::int from tests.alerts_35()), 3, 'H3: a refused debit alerts nothing');

-- re-armed by a grant; percent follows the last grant
select
    is(
        (public.grant_credits(200, 'top up', p_clerk_org_id => 'org_acme')).balance, 208.0000::numeric, 'a grant of 200'
    );
select is(
    (
        select low_balance_thresholds from public.organization_subscriptions
        where organization_id = tests.org_id_35('org_acme') and is_current
    ),
    array[50, 20]::numeric[],
    'H3: the grant re-resolved 10% against its own amount (200 -> 20, merged with the absolute 20)'
);
select is((public.deduct_credits_pooled('user_member', 160, 'to 48 again', 'org_acme')).ok, true, 'a debit to 48');
select is(
    (select count(*)::int from tests.alerts_35() where threshold = 50), 2,
    'H3: a grant re-armed 50: crossing it again is a new alert'
);

-- delivery ---------------------------------------------------------------------
select tests.act_as_service_role();
select is(
    (select count(*)::int from public.claim_low_balance_alerts(10, 60)), 4,
    'H3: the service role claims the four due alerts'
);
select is(
    (select count(*)::int from public.claim_low_balance_alerts(10, 60)), 0,
    'H3: claimed alerts are leased: a second claimer gets none'
);
select is(
    (public.complete_low_balance_alert(
        (select id from public.low_balance_alerts order by created_at, id limit 1), 'HTTP 500'
    )).delivered, false, 'H3: a failed attempt'
);
select results_eq(
    $$ select attempts, last_error, next_attempt_at > now() from public.low_balance_alerts
       order by created_at, id limit 1 $$,
    $$ values (1, 'http_5xx'::text, true) $$,
    'H3: keeps the error (as its H6 category) and backs off'
);
select tests.reset_role();
update public.low_balance_alerts set next_attempt_at = now() - interval '1 second'
where id = (select id from public.low_balance_alerts order by created_at, id limit 1);
select tests.act_as_service_role();
select results_eq(
    $$ select attempt from public.claim_low_balance_alerts(10, 60) $$,
    $$ values (2) $$,
    'H3: when due again it is claimed again: attempt 2'
);
select is(
    (public.complete_low_balance_alert(
        (select id from public.low_balance_alerts order by created_at, id limit 1)
    )).delivered, true, 'H3: delivered'
);
select tests.reset_role();
update public.low_balance_alerts set claimed_until = null, next_attempt_at = now() - interval '1 second';
select tests.act_as_service_role();
select is(
    (
        select count(*)::int from public.claim_low_balance_alerts(10, 60)
        where alert_id = (
                select a.id from public.low_balance_alerts as a order by a.created_at, a.id limit 1
            )
    ), 0,
    'H3: a delivered alert is never claimed again'
);
select tests.reset_role();
select is_empty($$ select * from public.credit_consistency_check() $$, 'H3: the ledger matches the pools');

select * from finish();
rollback;
