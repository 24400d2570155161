-- Accounts, organizations, seats and subscriptions: the shapes other clients
-- rely on, and the constraints that carry the invariants.
begin;
select plan(26);

select has_table('public', 'users', 'users exists');
select has_table('public', 'organizations', 'organizations exists');
select has_table('public', 'organization_seats', 'organization_seats exists');
select has_table('public', 'organization_subscriptions', 'organization_subscriptions exists');
select has_table('public', 'credit_transactions', 'credit_transactions exists');

select columns_are(
    'public', 'users',
    array['id', 'clerk_user_id', 'email', 'credits_balance', 'held', 'deleted_at', 'created_at', 'updated_at'],
    'users has the contract columns (plus balance, held (H1), deletion mark and timestamps)'
);
select col_type_is('public', 'users', 'clerk_user_id', 'text', 'Clerk user ids are text, not uuid');
select col_type_is('public', 'users', 'credits_balance', 'numeric(20,4)', 'personal credits have a fixed scale');
select col_type_is(
    'public', 'organization_subscriptions', 'credits_balance', 'numeric(20,4)',
    'pooled credits have a fixed scale'
);
select col_type_is('public', 'credit_transactions', 'amount', 'numeric(20,4)', 'ledger amounts have a fixed scale');
select columns_are(
    'public', 'organizations',
    array[
        'id', 'clerk_org_id', 'name', 'stripe_customer_id', 'created_at', 'updated_at',
        'default_seat_cap', 'default_seat_cap_period'
    ],
    'organizations has the contract columns'
);
select has_column('public', 'organization_seats', 'role', 'seats have a role');
select has_column('public', 'organization_seats', 'status', 'seats have a status');
select has_column('public', 'organization_subscriptions', 'stripe_subscription_id', 'subscriptions know Stripe');
select has_column('public', 'organization_subscriptions', 'status', 'subscriptions have a status');
select has_column('public', 'organization_subscriptions', 'is_current', 'subscriptions know which is current');
select has_column('public', 'organization_subscriptions', 'current_period_start', 'subscriptions have a period');
select columns_are(
    'public', 'credit_transactions',
    array[
        'id', 'created_at', 'pool', 'kind', 'user_id', 'organization_id', 'seat_id',
        'organization_subscription_id', 'amount', 'balance_after', 'description',
        'idempotency_key', 'request_fingerprint', 'refund_of_transaction_id',
        'subscription_period_start', 'subscription_period_end', 'metadata'
    ],
    'credit_transactions has the contract columns (plus pool, fingerprint, refund pointer, period)'
);

-- Arrange
select tests.create_user('user_alice');
select tests.create_org('org_acme', 'Acme', 'cus_acme');
select tests.create_seat('org_acme', 'user_alice', 'member', 'active');
select tests.create_subscription('org_acme', 'active', 10);

select throws_ok(
    $$ select tests.create_seat('org_acme', 'user_alice', 'admin', 'active') $$,
    '23505', null,
    'a user holds at most one seat per organization'
);

select throws_ok(
    $$ insert into public.organization_subscriptions (organization_id, status)
       select id, 'active' from public.organizations where clerk_org_id = 'org_acme' $$,
    '23505', null,
    'an organization has at most one current subscription'
);

select lives_ok(
    $$ insert into public.organization_subscriptions (organization_id, status, is_current)
       select id, 'canceled', false from public.organizations where clerk_org_id = 'org_acme' $$,
    'past (not current) subscriptions may pile up'
);

select throws_ok(
    $$ update public.organization_seats set status = 'deleted' $$,
    '23514', null,
    'seat status is one of active, pending, suspended, revoked'
);

select throws_ok(
    $$ update public.organization_seats set role = 'superuser' $$,
    '23514', null,
    'seat role is one of owner, admin, member'
);

select throws_ok(
    $$ update public.organization_subscriptions set status = 'expired' $$,
    '23514', null,
    'subscription status is one of Stripe''s values'
);

select throws_ok(
    $$ update public.users set credits_balance = -1 where clerk_user_id = 'user_alice' $$,
    '23514', null,
    'a personal balance is never negative'
);

select throws_ok(
    $$ update public.organization_subscriptions set credits_balance = -0.0001 where is_current $$,
    '23514', null,
    'a pool balance is never negative'
);

select * from finish();
rollback;
