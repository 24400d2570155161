-- Table and column privileges: anon holds nothing; authenticated may only
-- select (RLS filters); the service role selects everything and writes the
-- non-balance columns of accounts, orgs, seats and subscriptions, never a
-- balance and never the ledger; analytics views are for the service role.
begin;
select plan(49);

-- Tables and views, per role.
select
    table_privs_are(
        'public', t.table_name, r.role_name,
        case
            when r.role_name = 'anon' then array[]::name[]
            when r.role_name = 'authenticated' and t.is_view then array[]::name[]
            else array['SELECT']
        end,
        pg_catalog.format('%s: %s', t.table_name, r.role_name)
    )
from (
    values
    ('users'::name, false), ('organizations', false), ('organization_seats', false),
    ('organization_subscriptions', false), ('credit_transactions', false),
    ('credit_usage_by_org_day', true), ('credit_usage_by_seat', true),
    ('credit_usage_by_subscription_period', true), ('credit_balances', true)
) as t (table_name, is_view)
cross join (values ('anon'::name), ('authenticated'), ('service_role')) as r (role_name)
order by t.table_name, r.role_name;

-- Column-level writes for the service role.
select
    column_privs_are(
        'public', c.table_name, c.column_name, 'service_role', c.privs,
        pg_catalog.format(
            'service_role on %s.%s: %s', c.table_name, c.column_name,
            pg_catalog.array_to_string(c.privs, ', ')
        )
    )
from (
    values
    ('users'::name, 'clerk_user_id'::name, array['SELECT', 'INSERT']::name[]),
    ('users', 'email', array['SELECT', 'INSERT', 'UPDATE']),
    ('users', 'credits_balance', array['SELECT']),
    ('users', 'id', array['SELECT']),
    ('organizations', 'clerk_org_id', array['SELECT', 'INSERT']),
    ('organizations', 'name', array['SELECT', 'INSERT', 'UPDATE']),
    ('organizations', 'stripe_customer_id', array['SELECT', 'INSERT', 'UPDATE']),
    ('organization_seats', 'organization_id', array['SELECT', 'INSERT']),
    ('organization_seats', 'user_id', array['SELECT', 'INSERT']),
    ('organization_seats', 'role', array['SELECT', 'INSERT', 'UPDATE']),
    ('organization_seats', 'status', array['SELECT', 'INSERT', 'UPDATE']),
    ('organization_subscriptions', 'organization_id', array['SELECT', 'INSERT']),
    ('organization_subscriptions', 'status', array['SELECT', 'INSERT', 'UPDATE']),
    ('organization_subscriptions', 'is_current', array['SELECT', 'INSERT', 'UPDATE']),
    ('organization_subscriptions', 'current_period_start', array['SELECT', 'INSERT', 'UPDATE']),
    ('organization_subscriptions', 'credits_balance', array['SELECT']),
    ('credit_transactions', 'amount', array['SELECT']),
    ('credit_transactions', 'balance_after', array['SELECT']),
    ('credit_transactions', 'metadata', array['SELECT'])
) as c (table_name, column_name, privs)
order by c.table_name, c.column_name;

select is(
    (
        select count(*)::int
        from information_schema.column_privileges
        where table_schema = 'public'
            and table_name in (
                'users', 'organizations', 'organization_seats', 'organization_subscriptions',
                'credit_transactions'
            )
            and grantee = 'authenticated'
            and privilege_type <> 'SELECT'
    ),
    0,
    'authenticated holds no write privilege on any column'
);

-- The service role can create what the webhook sync creates.
select tests.act_as_service_role();
select lives_ok(
    $$ insert into public.users (clerk_user_id, email) values ('user_new', 'new@example.test')
       on conflict (clerk_user_id) do update set email = excluded.email $$,
    'the service role upserts a user (Clerk webhook sync)'
);
select throws_ok(
    $$ insert into public.users (clerk_user_id, credits_balance) values ('user_rich', 100) $$,
    '42501', null,
    'but cannot create one with a balance'
);
select tests.reset_role();

select * from finish();
rollback;
