-- Which subscription statuses may spend the pool: trialing and active only.
-- Every other Stripe status refuses with no_active_subscription and keeps the
-- pool's credits for when the subscription is active again.
begin;
select plan(11);

select tests.create_org('org_' || s, 'Org ' || s)
from unnest(array[
        'trialing', 'active', 'past_due', 'canceled', 'unpaid',
        'incomplete', 'incomplete_expired', 'paused'
    ]) as s;
select tests.create_subscription('org_' || s, s, 10)
from unnest(array[
        'trialing', 'active', 'past_due', 'canceled', 'unpaid',
        'incomplete', 'incomplete_expired', 'paused'
    ]) as s;
select tests.create_seat('org_' || s, 'user_member', 'member', 'active')
from unnest(array[
        'trialing', 'active', 'past_due', 'canceled', 'unpaid',
        'incomplete', 'incomplete_expired', 'paused'
    ]) as s;

select tests.act_as_service_role();
select results_eq(
    $$ select s, r.ok, r.reason
       from unnest(array[
           'trialing', 'active', 'past_due', 'canceled', 'unpaid',
           'incomplete', 'incomplete_expired', 'paused'
       ]) with ordinality as x (s, n)
       cross join lateral public.deduct_credits_pooled('user_member', 1, 'x', 'org_' || s) as r
       order by n $$,
    $$ values
        ('trialing', true, null::text),
        ('active', true, null),
        ('past_due', false, 'no_active_subscription'),
        ('canceled', false, 'no_active_subscription'),
        ('unpaid', false, 'no_active_subscription'),
        ('incomplete', false, 'no_active_subscription'),
        ('incomplete_expired', false, 'no_active_subscription'),
        ('paused', false, 'no_active_subscription') $$,
    'trialing and active spend; past_due, canceled, unpaid, incomplete, incomplete_expired, paused do not'
);
select tests.reset_role();

select is(tests.pool_balance('org_trialing'), 9::numeric, 'a trialing pool was spent');
select is(tests.pool_balance('org_active'), 9::numeric, 'an active pool was spent');
select is(tests.pool_balance('org_past_due'), 10::numeric, 'a past_due pool keeps its credits');
select is(tests.pool_balance('org_paused'), 10::numeric, 'a paused pool keeps its credits');

select ok(private.subscription_allows_spending('trialing'), 'trialing may spend');
select ok(private.subscription_allows_spending('active'), 'active may spend');
select ok(not private.subscription_allows_spending('past_due'), 'past_due may not (fail closed until paid)');
select ok(not private.subscription_allows_spending(null), 'no status may not');

-- When Stripe reports the payment, spending resumes with the same pool.
update public.organization_subscriptions as sub set status = 'active'
from public.organizations as o
where sub.organization_id = o.id and o.clerk_org_id = 'org_past_due';
select tests.act_as_service_role();
select results_eq(
    $$ select ok, balance from public.deduct_credits_pooled('user_member', 1, 'x', 'org_past_due') $$,
    $$ values (true, 9::numeric) $$,
    'a past_due subscription that becomes active spends its pool again'
);
select tests.reset_role();
select is(
    (select count(*)::int from public.credit_transactions where kind = 'deduction'), 3,
    'only the spending statuses wrote deductions'
);

select * from finish();
rollback;
