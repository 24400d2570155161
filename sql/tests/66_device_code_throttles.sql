-- R6: device codes resist guessing and phishing. Creation is throttled per
-- client and globally; wrong user codes are bounded globally too (fresh
-- accounts cannot keep guessing); the device page can name the client and
-- when the code was made without becoming a guessing oracle.
begin;
select plan(12);

select tests.act_as_service_role();

-- Creation: 30 a minute per client, then refused (SQLSTATE 54000).
select lives_ok(
    $$select count(
        public.create_device_code(encode(sha256(('dc-' || i)::bytea), 'hex'), encode(sha256(('uc-' || i)::bytea), 'hex'), 'vscode-extension'))
      from generate_series(1, 30) as i$$,
    'R6: 30 device codes of one client within a minute are created'
);
select throws_ok(
    $$select public.create_device_code(encode(sha256(('dc-31')::bytea), 'hex'),
      encode(sha256(('uc-31')::bytea), 'hex'), 'vscode-extension')$$,
    '54000',
    null,
    'R6: the 31st within a minute is refused for that client'
);
select lives_ok(
    $$select public.create_device_code(encode(sha256(('dc-other')::bytea), 'hex'),
      encode(sha256(('uc-other')::bytea), 'hex'), 'other-client')$$,
    'R6: another client still gets one'
);
-- Globally: 120 a minute, whatever the client.
select lives_ok(
    $$select count(
        public.create_device_code(encode(sha256(('dc-g' || i)::bytea), 'hex'), encode(sha256(('uc-g' || i)::bytea), 'hex'), 'client-' || (i % 10)))
      from generate_series(1, 89) as i$$,
    'R6: up to 120 a minute across clients'
);
select throws_ok(
    $$select public.create_device_code(encode(sha256(('dc-g-last')::bytea), 'hex'),
      encode(sha256(('uc-g-last')::bytea), 'hex'), 'client-new')$$,
    '54000',
    null,
    'R6: the 121st within a minute is refused globally'
);

-- The preview names the client and when the code was made; a wrong code is a guess.
select results_eq(
    $$select ok, reason, client_id, created_at = now()
      from public.preview_device_code(encode(sha256(('uc-1')::bytea), 'hex'), 'user_page')$$,
    $$values (true, null::text, 'vscode-extension', true)$$,
    'R6: the preview of a pending code names its client and when it was made'
);
select results_eq(
    $$select ok, reason, client_id
      from public.preview_device_code(encode(sha256(('uc-nope')::bytea), 'hex'), 'user_page')$$,
    $$values (false, 'unknown_code', null::text)$$,
    'R6: the preview of a wrong code says nothing about any client'
);
select tests.reset_role();
select is(
    (select failures from public.device_code_attempts where clerk_user_id = 'user_page'),
    1,
    'R6: and counts as a wrong guess'
);
select tests.act_as_service_role();

-- Wrong guesses beyond one account: 9 each from fresh accounts (under the
-- per-user 10), until the global bound of 100 in 15 minutes is reached.
select lives_ok(
    $$select count(
        public.decide_device_code(encode(sha256(('wrong-' || i)::bytea), 'hex'), 'user_fresh_' || (i / 9), false))
      from generate_series(1, 99) as i$$,
    '99 more wrong guesses spread over 12 fresh accounts'
);
select results_eq(
    $$select ok, reason
      from public.decide_device_code(encode(sha256(('uc-2')::bytea), 'hex'), 'user_fresh_new', true)$$,
    $$values (false, 'rate_limited')$$,
    'R6: after 100 wrong guesses in the window every account is refused, a right code too'
);
select results_eq(
    $$select ok, reason from public.preview_device_code(encode(sha256(('uc-3')::bytea), 'hex'), 'user_another')$$,
    $$values (false, 'rate_limited')$$,
    'R6: and so is the preview'
);
select tests.reset_role();
update public.device_code_guesses set window_started_at = now() - interval '16 minutes';
select tests.act_as_service_role();
select results_eq(
    $$select ok, status
      from public.decide_device_code(encode(sha256(('uc-2')::bytea), 'hex'), 'user_fresh_new', true)$$,
    $$values (true, 'approved')$$,
    'R6: once the window has passed, the right code is approved'
);
select tests.reset_role();

select * from finish();
rollback;
