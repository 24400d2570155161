-- H6: the alert deliverer is not a way into the network. Store-time rules for
-- webhook URLs (a table of accepted and refused URLs), outcomes admins read as
-- categories, and reports bound to their attempt (a stale one never releases a
-- newer claim).
begin;
select plan(81);

create temporary table urls_32 (url text, refusal text) on commit drop;
insert into urls_32 (url, refusal) values
-- accepted
('https://hooks.slack.com/services/T000/B000/XXXX', null),
('https://alerts.example.com:8443/low-balance?team=1#x', null),
('https://93.184.215.14/hook', null),
('https://[2606:4700:4700::1111]/hook', null),
('HTTPS://Hooks.Example.COM/x', null),
('https://xn--bcher-kva.example/hook', null),
-- scheme, userinfo, syntax
('http://hooks.example.com/hook', 'not_https'),
('ftp://hooks.example.com/hook', 'not_https'),
('file:///etc/passwd', 'not_https'),
('https://user:pass@hooks.example.com/', 'userinfo'),
('https://hooks.example.com@127.0.0.1/', 'userinfo'),
('https://127.0.0.1\@hooks.example.com/', 'bad_syntax'),
('https://hooks.example.com /x', 'bad_syntax'),
('https://%31%32%37.0.0.1/', 'bad_syntax'),
('https://１２７.0.0.1/', 'bad_syntax'),
('https://hooks.example.com:0/', 'bad_syntax'),
('https://hooks.example.com:70000/', 'bad_syntax'),
('https:///hook', 'bad_syntax'),
('https://a..example.com/', 'bad_syntax'),
('https://[fe80::1%25eth0]/', 'bad_syntax'),
-- IPv4 literals, every spelling of loopback and friends
('https://127.0.0.1/internal', 'non_public_address'),
('https://127.0.0.1:5432/', 'non_public_address'),
('https://127.1/', 'non_canonical_address'),
('https://0/', 'non_canonical_address'),
('https://0.0.0.0/', 'non_public_address'),
('https://2130706433/', 'non_canonical_address'),
('https://0x7f000001/', 'non_canonical_address'),
('https://0x7f.0.0.1/', 'non_canonical_address'),
('https://0177.0.0.1/', 'non_canonical_address'),
('https://127.000.000.001/', 'non_canonical_address'),
('https://8.8.2056/', 'non_canonical_address'),
('https://10.1.2.3/', 'non_public_address'),
('https://172.16.0.1/', 'non_public_address'),
('https://172.31.255.255/', 'non_public_address'),
('https://192.168.1.1/', 'non_public_address'),
('https://100.64.0.1/', 'non_public_address'),
('https://100.100.100.200/', 'non_public_address'),
('https://169.254.169.254/latest/meta-data/', 'non_public_address'),
('https://224.0.0.1/', 'non_public_address'),
('https://255.255.255.255/', 'non_public_address'),
('https://198.18.0.1/', 'non_public_address'),
-- IPv6 literals
('https://[::1]/', 'non_public_address'),
('https://[::]/', 'non_public_address'),
('https://[::ffff:127.0.0.1]/', 'non_public_address'),
('https://[::ffff:7f00:1]/', 'non_public_address'),
('https://[64:ff9b::7f00:1]/', 'non_public_address'),
('https://[fc00::1]/', 'non_public_address'),
('https://[fd12:3456::1]/', 'non_public_address'),
('https://[fe80::1]/', 'non_public_address'),
('https://[ff02::1]/', 'non_public_address'),
('https://[2002:7f00:1::1]/', 'non_public_address'),
('https://[2001:db8::1]/', 'non_public_address'),
('https://[not:an:address::g]/', 'bad_syntax'),
-- names
('https://localhost/', 'internal_name'),
('https://localhost./', 'internal_name'),
('https://LOCALHOST:8080/', 'internal_name'),
('https://api.localhost/', 'internal_name'),
('https://metadata/', 'internal_name'),
('https://metadata.google.internal/computeMetadata/v1/', 'internal_name'),
('https://instance-data.ec2.internal/', 'internal_name'),
('https://metadata.goog/', 'internal_name'),
('https://printer.local/', 'internal_name'),
('https://intranet/', 'internal_name'),
('https://1.0.0.127.in-addr.arpa/', 'internal_name');

select is(private.webhook_url_refusal(url), refusal, 'H6: ' || url || ' -> ' || coalesce(refusal, 'accepted'))
from urls_32;

-- through the RPC ----------------------------------------------------------------
select tests.create_rls_story();
create function tests.org_id_32(p_clerk_org_id text) returns uuid
language sql stable security definer set search_path = ''
as $$ select o.id from public.organizations as o where o.clerk_org_id = p_clerk_org_id $$;
grant execute on function tests.org_id_32(text) to anon, authenticated, service_role;

select tests.act_as_user('user_admin');
select throws_ok(
    $$ select public.set_low_balance_webhook(tests.org_id_32('org_acme'), 'http://127.0.0.1:5432/internal') $$,
    '22023', 'p_url must be an https URL of a public host (refused: not_https)',
    'H6: an admin cannot point the webhook at http://127.0.0.1'
);
select throws_ok(
    $$ select public.set_low_balance_webhook(tests.org_id_32('org_acme'), 'https://127.1:8080/') $$,
    '22023', 'p_url must be an https URL of a public host (refused: non_canonical_address)',
    'H6: nor at 127.1'
);
select throws_ok(
    $$ select public.set_low_balance_webhook(tests.org_id_32('org_acme'), 'https://metadata.google.internal/') $$,
    '22023', 'p_url must be an https URL of a public host (refused: internal_name)',
    'H6: nor at a metadata name'
);
select is(
    (public.set_low_balance_webhook(tests.org_id_32('org_acme'), 'https://hooks.example.com/acme')).webhook_url,
    'https://hooks.example.com/acme', 'H6: a public https URL is stored'
);
select tests.act_as_service_role();
select throws_ok(
    $$ select public.set_low_balance_webhook_as(null, tests.org_id_32('org_acme'), 'https://[::1]/') $$,
    '22023', 'p_url must be an https URL of a public host (refused: non_public_address)',
    'H6: the service role is held to the same rules'
);

-- outcomes and attempts ------------------------------------------------------------
select tests.reset_role();
insert into public.low_balance_alerts (
    organization_id, organization_subscription_id, threshold, balance_before, balance_after
)
select
    sub.organization_id,
    sub.id,
    50 as threshold,
    60 as balance_before,
    40 as balance_after
from public.organization_subscriptions as sub
where sub.organization_id = tests.org_id_32('org_acme') and sub.is_current;
select tests.act_as_service_role();
select is((select attempt from public.claim_low_balance_alerts(10, 60)), 1, 'H6: attempt 1 claimed');
select is(
    (public.complete_low_balance_alert(
        (select id from public.low_balance_alerts), 'TypeError: fetch failed: connection refused (os error 111)'
    )).delivered,
    false, 'H6: an old deliverer reports remote text'
);
select results_eq(
    $$ select last_outcome, last_error from public.low_balance_alerts $$,
    $$ values ('unreachable'::text, 'unreachable'::text) $$,
    'H6: only its category is stored: an admin never reads the remote''s text'
);
select throws_ok(
    $$ select public.finish_low_balance_alert((select id from public.low_balance_alerts), 1, 'HTTP 401') $$,
    '22023', null, 'H6: finish_low_balance_alert takes a category only'
);

-- Attempt 2's lease runs out while it is still posting; attempt 3 claims it.
select tests.reset_role();
update public.low_balance_alerts set next_attempt_at = now() - interval '1 second';
select tests.act_as_service_role();
select is((select attempt from public.claim_low_balance_alerts(10, 60)), 2, 'H6: attempt 2 claimed');
select tests.reset_role();
update public.low_balance_alerts set claimed_until = now() - interval '1 second';
select tests.act_as_service_role();
select is((select attempt from public.claim_low_balance_alerts(10, 60)), 3, 'H6: its lease ran out: attempt 3 claimed');
select is(
    (public.finish_low_balance_alert((select id from public.low_balance_alerts), 2, 'timeout')).attempts,
    3, 'H6: attempt 2 reports its timeout late'
);
select is(
    (select count(*)::int from public.claim_low_balance_alerts(10, 60)), 0,
    'H6: the stale report did not release attempt 3''s lease: nobody posts it a third time meanwhile'
);
select is(
    (public.finish_low_balance_alert((select id from public.low_balance_alerts), 3, 'delivered')).delivered,
    true, 'H6: attempt 3 delivers'
);
select tests.act_as_user('user_admin');
select results_eq(
    $$ select last_outcome, last_error, delivered_at is not null from public.low_balance_alerts $$,
    $$ values ('delivered'::text, null::text, true) $$,
    'H6: the admin reads the category through RLS'
);
select tests.reset_role();
select throws_ok(
    $$ update public.low_balance_alerts set last_outcome = 'HTTP 401' $$,
    '23514', null, 'H6: last_outcome holds a category only'
);
select throws_ok(
    $$ update public.low_balance_alerts set last_error = 'fetch failed' $$,
    '23514', null, 'H6: and so does last_error'
);

select * from finish();
rollback;
