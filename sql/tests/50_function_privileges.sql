-- Grants on every credit function: who may execute what, and which run as
-- security definer. Each grant is written next to its function in the
-- migrations; this file is the matrix in one place.
begin;
select plan(82);

create temp table expected (
    schema_name name,
    function_name name,
    args name[],
    runs_as text,          -- 'definer' or 'invoker'
    executable_by name[]   -- among anon, authenticated, service_role
) on commit drop;

insert into expected values
('public', 'deduct_credits_pooled', '{text,numeric,text,text,text,jsonb}', 'definer', '{service_role}'),
('public', 'grant_credits', '{numeric,text,text,text,text,jsonb}', 'definer', '{service_role}'),
('public', 'refund_credits', '{uuid,numeric,text,text,jsonb}', 'definer', '{service_role}'),
('public', 'resolve_org_attribution', '{text,text}', 'definer', '{service_role}'),
('public', 'set_seat_status', '{text,text,text}', 'definer', '{service_role}'),
('public', 'credit_consistency_check', '{}', 'invoker', '{service_role}'),
('public', 'get_my_personal_balance', '{}', 'invoker', '{authenticated}'),
('public', 'get_my_org_pools', '{}', 'invoker', '{authenticated}'),
('private', 'my_org_pools', '{}', 'definer', '{authenticated}'),
('private', 'current_app_user_id', '{}', 'definer', '{authenticated}'),
('private', 'admin_organization_ids', '{}', 'definer', '{authenticated}'),
('private', 'member_organization_ids', '{}', 'definer', '{authenticated}'),
('private', 'subscription_allows_spending', '{text}', 'invoker', '{}'),
('private', 'valid_credit_amount', '{numeric}', 'invoker', '{}'),
('private', 'valid_credit_context', '{text,text,jsonb}', 'invoker', '{}'),
('private', 'credit_request_fingerprint', '{jsonb}', 'invoker', '{}'),
('private', 'idempotent_replay', '{text,uuid,text,text,text,uuid}', 'invoker', '{}'),
('private', 'uuid_v7', '{}', 'invoker', '{}'),
('private', 'set_updated_at', '{}', 'invoker', '{}');

select
    function_privs_are(
        e.schema_name, e.function_name, e.args, r.role_name,
        case when r.role_name = any(e.executable_by) then array['EXECUTE'] else array[]::name[] end,
        pg_catalog.format(
            '%s %s %s.%s(%s)', r.role_name,
            case when r.role_name = any(e.executable_by) then 'may execute' else 'may not execute' end,
            e.schema_name, e.function_name, pg_catalog.array_to_string(e.args, ', ')
        )
    )
from expected as e
cross join (values ('anon'::name), ('authenticated'), ('service_role')) as r (role_name)
order by e.schema_name, e.function_name, r.role_name;

select
    case e.runs_as
        when 'definer'
            then is_definer(
                    e.schema_name, e.function_name, e.args,
                    pg_catalog.format('%s.%s runs as security definer', e.schema_name, e.function_name)
                )
        else isnt_definer(
                e.schema_name, e.function_name, e.args,
                pg_catalog.format('%s.%s runs as security invoker', e.schema_name, e.function_name)
            )
    end
from expected as e
order by e.schema_name, e.function_name;

select
    function_privs_are(
        'private', 'forbid_ledger_changes', array[]::name[], r.role_name, array[]::name[],
        r.role_name || ' may not execute the ledger trigger function'
    )
from (values ('anon'::name), ('authenticated'), ('service_role')) as r (role_name);

select is(
    (
        select p.proconfig from pg_catalog.pg_proc as p
        where p.oid = 'public.deduct_credits_pooled(text,numeric,text,text,text,jsonb)'::regprocedure
    ),
    array['search_path=""'],
    'deduct_credits_pooled runs with an empty search_path'
);
select function_returns(
    'public', 'deduct_credits_pooled', array['text', 'numeric', 'text', 'text', 'text', 'jsonb'],
    'credit_result', 'deduct_credits_pooled returns public.credit_result'
);
select function_returns(
    'public', 'resolve_org_attribution', array['text', 'text'], 'org_attribution',
    'resolve_org_attribution returns public.org_attribution'
);

select * from finish();
rollback;
