-- C7: credit_consistency_check() lists every pool whose balance differs from
-- the sum of its ledger rows; empty when all is well.
begin;
select plan(6);

select tests.create_org('org_acme', 'Acme');
select tests.create_subscription('org_acme', 'active', 100);
select tests.create_seat('org_acme', 'user_member', 'member', 'active');
select public.grant_credits(40, 'personal', 'user_member');

select tests.act_as_service_role();
select public.deduct_credits_pooled('user_member', 30, 'x', 'org_acme');
select public.deduct_credits_pooled('user_member', 15, 'y');
select public.refund_credits(
    (select id from public.credit_transactions where kind = 'deduction' and pool = 'organization'), 5
);
select is_empty(
    $$ select * from public.credit_consistency_check() $$,
    'after grants, deductions and refunds every pool matches its ledger'
);
select tests.reset_role();

-- Break a balance behind the RPCs' back (only the owner can) and it shows.
update public.users set credits_balance = credits_balance + 1 where clerk_user_id = 'user_member';
update public.organization_subscriptions set credits_balance = credits_balance - 2 where is_current;

select tests.act_as_service_role();
select results_eq(
    $$ select pool, owner_id, balance, ledger_sum from public.credit_consistency_check() order by pool $$,
    $$ select 'organization', id, 73::numeric, 75::numeric from public.organization_subscriptions where is_current
       union all
       select 'personal', id, 26::numeric, 25::numeric from public.users where clerk_user_id = 'user_member'
       order by 1 $$,
    'a tampered balance is reported with its ledger sum'
);
select tests.reset_role();

select function_returns(
    'public', 'credit_consistency_check', array[]::text[], 'setof record',
    'credit_consistency_check returns rows'
);
select function_privs_are(
    'public', 'credit_consistency_check', array[]::text[], 'service_role', array['EXECUTE'],
    'the service role may run the check'
);
select function_privs_are(
    'public', 'credit_consistency_check', array[]::text[], 'authenticated', array[]::text[],
    'signed-in users may not'
);
select function_privs_are(
    'public', 'credit_consistency_check', array[]::text[], 'anon', array[]::text[],
    'anon may not'
);

select * from finish();
rollback;
