-- L10, for holds: a user deleted in Clerk reserves nothing, and the holds
-- made before the event go back with it (nothing of them is ever spent).
begin;
select plan(10);

select tests.create_user('hold_gone', p_personal_credits => 20);
select tests.create_user('hold_live', p_personal_credits => 20);
select tests.create_org('org_l10h', 'L10 Holds');
select tests.create_subscription('org_l10h', p_pool_credits => 100);
select tests.create_seat('org_l10h', 'hold_gone');

select tests.act_as_service_role();
select
    (public.authorize_credits('hold_gone', 5, 'personal, before', p_idempotency_key => 'l10h-p'))
    .hold_id as personal_hold
\gset
select (public.authorize_credits('hold_gone', 7, 'org, before', 'org_l10h')).hold_id as org_hold
\gset
select (public.authorize_credits('hold_live', 3, 'another user')).hold_id as live_hold
\gset
select tests.reset_role();

select ok(
    (public.apply_clerk_event(
        'msg_l10h_gone',
        '{"type": "user.deleted", "object": "event", "timestamp": 9000,
          "data": {"id": "hold_gone", "object": "user", "deleted": true}}'
    )).applied,
    'user.deleted is applied'
);

select results_eq(
    $$select state from public.credit_holds
      where user_id = (select id from public.users where clerk_user_id = 'hold_gone') order by amount$$,
    $$values ('voided'), ('voided')$$,
    'L10: user.deleted voids every live hold of the user, personal and organization'
);
select results_eq(
    $$select credits_balance, held from public.users where clerk_user_id = 'hold_gone'$$,
    $$values (20.0000::numeric(20, 4), 0.0000::numeric(20, 4))$$,
    'L10: the personal reservation goes back, nothing is spent'
);
select results_eq(
    $$select held from public.organization_subscriptions
      where organization_id = (select id from public.organizations where clerk_org_id = 'org_l10h')$$,
    $$values (0.0000::numeric(20, 4))$$,
    'L10: the pool''s reservation goes back'
);

select tests.act_as_service_role();
select results_eq(
    format($$select ok, reason from public.capture_credits(%L, 'hold_gone', 5)$$, :'personal_hold'),
    $$values (false, 'hold_voided')$$,
    'L10: a personal hold made before the event captures nothing after it'
);
select results_eq(
    format($$select ok, reason from public.capture_credits(%L, 'hold_gone', 7)$$, :'org_hold'),
    $$values (false, 'hold_voided')$$,
    'L10: nor does an org hold'
);
select results_eq(
    $$select ok, reason from public.authorize_credits('hold_gone', 1, 'after')$$,
    $$values (false, 'account_closed')$$,
    'L10: a deleted user reserves nothing from the personal pool (account_closed)'
);
select results_eq(
    $$select ok, replayed, amount from public.authorize_credits('hold_gone', 5, 'personal, before',
      p_idempotency_key => 'l10h-p')$$,
    $$values (true, true, 5.0000::numeric(20, 4))$$,
    'L10: the retry of a hold made before the event still answers what was done'
);
select results_eq(
    format($$select ok from public.capture_credits(%L, 'hold_live', 3)$$, :'live_hold'),
    $$values (true)$$,
    'another user''s hold still captures'
);
select tests.reset_role();

select is(
    (
        select count(*) from public.credit_transactions as t
        where t.user_id = (select u.id from public.users as u where u.clerk_user_id = 'hold_gone')
            and t.kind <> 'grant'
    ),
    0::bigint,
    'L10: no ledger row but the opening grant for the deleted user'
);

select * from finish();
rollback;
