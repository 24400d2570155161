-- C6: the ledger is append-only. update, delete and truncate fail for anon,
-- authenticated and service_role (privileges), and for the owner (trigger).
begin;
select plan(14);

select tests.create_org('org_acme', 'Acme');
select tests.create_subscription('org_acme', 'active', 100);
select tests.create_seat('org_acme', 'user_admin', 'admin', 'active');

create temp table forbidden (statement text, what text) on commit drop;
insert into forbidden values
($$ update public.credit_transactions set amount = 1 $$, 'update the ledger'),
($$ delete from public.credit_transactions $$, 'delete from the ledger'),
($$ truncate public.credit_transactions $$, 'truncate the ledger');
grant select on forbidden to anon, authenticated, service_role;

select tests.act_as_anon();
select throws_ok(f.statement, '42501', null, 'anon cannot ' || f.what)
from forbidden as f;
select throws_ok(
    $$ insert into public.credit_transactions (pool, kind, user_id, amount, balance_after, description)
       values ('personal', 'grant', gen_random_uuid(), 1, 1, 'x') $$,
    '42501', null, 'anon cannot insert into the ledger'
);

-- An org admin reads the org's rows, and still cannot change them.
select tests.act_as_user('user_admin');
select throws_ok(f.statement, '42501', null, 'authenticated cannot ' || f.what)
from forbidden as f;

select tests.act_as_service_role();
select throws_ok(f.statement, '42501', null, 'service_role cannot ' || f.what)
from forbidden as f;
select throws_ok(
    $$ insert into public.credit_transactions (pool, kind, user_id, amount, balance_after, description)
       select 'personal', 'grant', id, 1, 1, 'forged' from public.users limit 1 $$,
    '42501', null, 'service_role cannot insert ledger rows directly: only through the RPCs'
);

select tests.reset_role();
select throws_ok(
    $$ update public.credit_transactions set description = 'rewritten' $$,
    '42501', 'credit_transactions is append-only: UPDATE is not allowed',
    'the owner cannot update either (trigger)'
);
select throws_ok(
    $$ delete from public.credit_transactions where false $$,
    '42501', 'credit_transactions is append-only: DELETE is not allowed',
    'the owner cannot delete, even a statement matching no row'
);
select throws_ok(
    $$ truncate public.credit_transactions $$,
    '42501', 'credit_transactions is append-only: TRUNCATE is not allowed',
    'the owner cannot truncate'
);

select * from finish();
rollback;
