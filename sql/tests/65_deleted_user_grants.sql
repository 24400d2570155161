-- L10: a code approved before user.deleted redeems nothing after it, and a
-- deleted user's personal credits are spent by nothing (an access token
-- issued before the event lives up to an hour: the database refuses it).
begin;
select plan(12);

select
    'dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk' as verifier,
    'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM' as challenge,
    'vscode-extension' as client,
    'vscode://softcodes.vscode/auth-callback' as redirect,
    encode(sha256(convert_to('l10-code', 'UTF8')), 'hex') as code_gone,
    encode(sha256(convert_to('l10-code-live', 'UTF8')), 'hex') as code_live,
    encode(sha256(convert_to('l10-device', 'UTF8')), 'hex') as dc_gone,
    encode(sha256(convert_to('l10-user-code', 'UTF8')), 'hex') as uc_gone
\gset

select tests.create_user('user_gone', p_personal_credits => 20);
select tests.create_user('user_live', p_personal_credits => 20);

select tests.act_as_service_role();
-- Approved while the user exists: an authorization code and a device code.
select public.create_oauth_code(:'code_gone', 'user_gone', :'client', :'redirect', :'challenge', 'S256');
select public.create_oauth_code(:'code_live', 'user_live', :'client', :'redirect', :'challenge', 'S256');
select public.create_device_code(:'dc_gone', :'uc_gone', :'client');
select ok(
    (public.decide_device_code(:'uc_gone', 'user_gone', true)).ok,
    'the device code is approved before the event'
);
-- A deduction with a key, before the event: its retry may replay it afterwards.
select ok(
    (public.deduct_credits_pooled('user_gone', 2, 'before', p_idempotency_key => 'l10-key')).ok,
    'a personal deduction before the event'
);
select tests.reset_role();

select ok(
    (public.apply_clerk_event(
        'msg_l10_gone',
        '{"type": "user.deleted", "object": "event", "timestamp": 9000,
          "data": {"id": "user_gone", "object": "user", "deleted": true}}'
    )).applied,
    'user.deleted is applied'
);

select tests.act_as_service_role();
select results_eq(
    format(
        $$select ok, error, reason, clerk_user_id from public.consume_oauth_code(%L, %L, %L, %L)$$,
        :'code_gone', :'client', :'redirect', :'verifier'
    ),
    $$values (false, 'invalid_grant', 'account_closed', null::text)$$,
    'L10: an authorization code approved before user.deleted redeems nothing (account_closed)'
);
select results_eq(
    format(
        $$select ok, error, reason from public.consume_oauth_code(%L, %L, %L, %L)$$,
        :'code_gone', :'client', :'redirect', :'verifier'
    ),
    $$values (false, 'invalid_grant', 'already_used')$$,
    'L10: and it is spent: presented again it is already_used'
);
select results_eq(
    format(
        $$select ok, clerk_user_id from public.consume_oauth_code(%L, %L, %L, %L)$$,
        :'code_live', :'client', :'redirect', :'verifier'
    ),
    $$values (true, 'user_live')$$,
    'L10: another user''s code still redeems'
);
select results_eq(
    format($$select ok, error, reason, clerk_user_id from public.poll_device_code(%L, %L)$$, :'dc_gone', :'client'),
    $$values (false, 'invalid_grant', 'account_closed', null::text)$$,
    'L10: a device code approved before user.deleted redeems nothing (account_closed)'
);
select results_eq(
    format($$select ok, reason from public.poll_device_code(%L, %L)$$, :'dc_gone', :'client'),
    $$values (false, 'already_used')$$,
    'L10: and it is spent'
);
select results_eq(
    $$select ok, pool, reason from public.deduct_credits_pooled('user_gone', 1, 'after')$$,
    $$values (false, 'personal', 'account_closed')$$,
    'L10: a deleted user''s personal credits are not spent (account_closed)'
);
select results_eq(
    $$select ok, replayed from public.deduct_credits_pooled('user_gone', 2, 'before', p_idempotency_key => 'l10-key')$$,
    $$values (true, true)$$,
    'L10: the retry of a deduction made before the event replays it (nothing new is spent)'
);
select ok(
    (public.deduct_credits_pooled('user_live', 1, 'alive')).ok,
    'L10: a live user spends as before'
);
select tests.reset_role();
select is(tests.personal_balance('user_gone'), 18::numeric, 'L10: only the deduction before the event was spent');

select * from finish();
rollback;
