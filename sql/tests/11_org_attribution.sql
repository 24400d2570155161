-- Seat-gated org attribution (A1): resolve_org_attribution returns the org's
-- attribution only to a user with an active seat, and exactly the contract's keys:
-- a public.org_attribution row, or a null row when there is none.
begin;
select plan(18);

select tests.create_org('org_acme', 'Acme', 'cus_acme');
select tests.create_subscription('org_acme', 'active', 100, 'sub_acme');
select tests.create_seat('org_acme', 'user_admin', 'admin', 'active');
select tests.create_seat('org_acme', 'user_member', 'member', 'active');
select tests.create_seat('org_acme', 'user_pending', 'member', 'pending');
select tests.create_seat('org_acme', 'user_suspended', 'member', 'suspended');
select tests.create_seat('org_acme', 'user_revoked', 'admin', 'revoked');
select tests.create_user('user_outsider');
select tests.create_org('org_nosub', 'No Subscription Inc');
select tests.create_seat('org_nosub', 'user_member', 'owner', 'active');
update public.users set email = 'member@acme.test' where clerk_user_id = 'user_member';

-- As the owner (the service role may not call the private builder).
select is(
    (
        select array_agg(a.attname::text order by a.attnum)
        from pg_attribute as a
        where a.attrelid = 'public.org_attribution'::regclass and a.attnum > 0
    ),
    array[
        'pool', 'clerk_org_id', 'organization_id', 'organization_name', 'stripe_customer_id',
        'organization_subscription_id', 'seat_id', 'seat_role'
    ],
    'public.org_attribution has exactly the attribution keys as columns'
);
select is(
    (
        select array_agg(k order by k)
        from jsonb_object_keys(
                private.org_attribution_metadata(null, null, null, null, null, null, null)
            ) as k
    ),
    (
        select array_agg(a.attname::text order by a.attname::text)
        from pg_attribute as a
        where a.attrelid = 'public.org_attribution'::regclass and a.attnum > 0
    ),
    'and the same keys as the one builder of ledger metadata (no drift between token and ledger)'
);

select tests.act_as_service_role();

select is(
    (
        select array_agg(k order by k)
        from jsonb_object_keys(
                to_jsonb(public.resolve_org_attribution('user_member', 'org_acme'))
            ) as k
    ),
    array[
        'clerk_org_id', 'organization_id', 'organization_name', 'organization_subscription_id',
        'pool', 'seat_id', 'seat_role', 'stripe_customer_id'
    ],
    'an active seat yields exactly the eight attribution keys'
);

select is(
    to_jsonb(public.resolve_org_attribution('user_member', 'org_acme')),
    jsonb_build_object(
        'pool', 'organization',
        'clerk_org_id', 'org_acme',
        'organization_id', (select id from public.organizations where clerk_org_id = 'org_acme'),
        'organization_name', 'Acme',
        'stripe_customer_id', 'cus_acme',
        'organization_subscription_id', (
            select id from public.organization_subscriptions where stripe_subscription_id = 'sub_acme'
        ),
        'seat_id', tests.seat_id('org_acme', 'user_member'),
        'seat_role', 'member'
    ),
    'a member with an active seat gets the org, its current subscription and their seat'
);

select is(
    (public.resolve_org_attribution('user_admin', 'org_acme')).seat_role, 'admin',
    'the seat role is the seat''s (org_role comes from Clerk, not from here)'
);

select is(
    public.resolve_org_attribution('user_pending', 'org_acme'), null,
    'a pending seat gets no attribution'
);
select is(
    public.resolve_org_attribution('user_suspended', 'org_acme'), null,
    'a suspended seat gets no attribution'
);
select is(
    public.resolve_org_attribution('user_revoked', 'org_acme'), null,
    'a revoked seat gets no attribution'
);
select is(
    public.resolve_org_attribution('user_outsider', 'org_acme'), null,
    'a user without a seat gets no attribution'
);
select is(
    public.resolve_org_attribution('user_nobody', 'org_acme'), null,
    'an unknown user gets no attribution'
);
select is(
    public.resolve_org_attribution('user_member', 'org_nowhere'), null,
    'an unknown organization gives no attribution'
);
select is(
    public.resolve_org_attribution('user_member', null), null,
    'no organization, no attribution'
);

select ok(
    to_jsonb(public.resolve_org_attribution('user_member', 'org_nosub'))
    ? 'organization_subscription_id'
    and (public.resolve_org_attribution('user_member', 'org_nosub')).organization_subscription_id
    is null
    and (public.resolve_org_attribution('user_member', 'org_nosub')).seat_id is not null,
    'without a current subscription the column is there and null'
);

-- resolve_token_subject (L9): a public.token_subject row, never null itself.
select is(
    (public.resolve_token_subject('user_member', 'org_acme')).attribution,
    public.resolve_org_attribution('user_member', 'org_acme'),
    'L9: resolve_token_subject carries resolve_org_attribution''s row unchanged'
);
select ok(
    (public.resolve_token_subject('user_member')).attribution is null
    and (public.resolve_token_subject('user_suspended', 'org_acme')).attribution is null,
    'L9: and a null attribution without an org or without an active seat'
);
select is(
    (public.resolve_token_subject('user_member')).email, 'member@acme.test',
    'L9: the email is users.email'
);
select is(
    to_jsonb(public.resolve_token_subject('user_nobody', 'org_acme')),
    '{"email": null, "attribution": null}'::jsonb,
    'L9: an unknown user: a row of nulls (email and attribution), not an error'
);

select tests.reset_role();
select tests.act_as_user('user_member');
select throws_ok(
    $$ select public.resolve_org_attribution('user_member', 'org_acme') $$,
    '42501', null,
    'a signed-in user cannot call resolve_org_attribution (service role only)'
);

select * from finish();
rollback;
