-- Clerk webhook sync: apply_clerk_event keeps organizations, users and seats
-- true, deduplicates by svix-id, ignores stale and unknown events, and a
-- deleted membership stops the seat from spending (no_active_seat).
begin;
select plan(110);

-- The story's clock: event time p_ts (milliseconds) is placed so that 4500
-- is the transaction's now(), the time of the manual seat changes
-- (set_seat_status), which take part in the ordering (L1).
create function pg_temp.clock(p_ts bigint)
returns bigint
language sql
as $$
    select (extract(epoch from now()) * 1000)::bigint - 4500 + p_ts
$$;
grant execute on function pg_temp.clock(bigint) to anon, authenticated, service_role;

-- Clerk's event shapes (see Clerk's webhook payloads), built for the tests.
create function pg_temp.org_event(
    p_type text, p_org text, p_name text, p_ts bigint, p_created_by text default 'user_creator'
)
returns jsonb
language sql
as $$
    select jsonb_build_object(
        'type', p_type,
        'object', 'event',
        'timestamp', pg_temp.clock(p_ts),
        'data', case
            when p_type = 'organization.deleted'
                then jsonb_build_object('id', p_org, 'object', 'organization', 'deleted', true)
            else jsonb_build_object(
                'id', p_org, 'object', 'organization', 'name', p_name, 'slug', lower(p_name),
                'created_by', p_created_by, 'created_at', p_ts, 'updated_at', p_ts,
                'public_metadata', '{}'::jsonb
            )
        end
    )
$$;

create function pg_temp.member_event(
    p_type text, p_org text, p_user text, p_role text, p_ts bigint,
    p_identifier text default null, p_created_by text default 'user_creator'
)
returns jsonb
language sql
as $$
    select jsonb_build_object(
        'type', p_type,
        'object', 'event',
        'timestamp', pg_temp.clock(p_ts),
        'data', jsonb_build_object(
            'id', 'orgmem_' || p_user,
            'object', 'organization_membership',
            'role', p_role,
            'created_at', p_ts,
            'updated_at', p_ts,
            'organization', jsonb_build_object(
                'id', p_org, 'object', 'organization', 'name', 'Acme Inc', 'slug', 'acme-inc',
                'created_by', p_created_by
            ),
            'public_user_data', jsonb_build_object(
                'user_id', p_user,
                'identifier', coalesce(p_identifier, p_user || '@example.org'),
                'first_name', null, 'last_name', null, 'has_image', false
            )
        )
    )
$$;

create function pg_temp.user_event(p_type text, p_user text, p_ts bigint, p_data jsonb default '{}')
returns jsonb
language sql
as $$
    select jsonb_build_object(
        'type', p_type,
        'object', 'event',
        'timestamp', pg_temp.clock(p_ts),
        'data', jsonb_build_object('id', p_user, 'object', 'user') || p_data
    )
$$;

create function pg_temp.seat(p_org text, p_user text)
returns text
language sql
as $$
    select s.role || '/' || s.status
    from public.organization_seats as s
    inner join public.organizations as o on s.organization_id = o.id
    inner join public.users as u on s.user_id = u.id
    where o.clerk_org_id = p_org and u.clerk_user_id = p_user
$$;

-- The migrations revoke execute from PUBLIC by default: open the helpers to
-- the roles the tests act as.
grant execute on function pg_temp.org_event(text, text, text, bigint, text) to anon, authenticated, service_role;
grant execute on function pg_temp.member_event(text, text, text, text, bigint, text, text)
to anon, authenticated, service_role;
grant execute on function pg_temp.user_event(text, text, bigint, jsonb) to anon, authenticated, service_role;
grant execute on function pg_temp.seat(text, text) to service_role;

-- Privileges (D2, D3) -----------------------------------------------------------

select function_privs_are(
    'public', 'apply_clerk_event', array['text', 'jsonb'], 'anon', array[]::text[],
    'anon cannot execute apply_clerk_event'
);
select function_privs_are(
    'public', 'apply_clerk_event', array['text', 'jsonb'], 'authenticated', array[]::text[],
    'authenticated cannot execute apply_clerk_event'
);
select function_privs_are(
    'public', 'apply_clerk_event', array['text', 'jsonb'], 'service_role', array['EXECUTE'],
    'service_role executes apply_clerk_event'
);
select ok(
    not exists (
        select 1
        from pg_proc as p, aclexplode(p.proacl) as a
        where p.oid = 'public.apply_clerk_event(text, jsonb)'::regprocedure and a.grantee = 0
    ),
    'PUBLIC has no execute on apply_clerk_event'
);
select is_definer('public', 'apply_clerk_event', array['text', 'jsonb'], 'apply_clerk_event is security definer');
select ok(
    (
        select 'search_path=""' = any(p.proconfig)
        from pg_proc as p
        where p.oid = 'public.apply_clerk_event(text, jsonb)'::regprocedure
    ),
    'apply_clerk_event sets search_path to empty'
);
select isnt(
    obj_description('public.apply_clerk_event(text, jsonb)'::regprocedure, 'pg_proc'), null,
    'apply_clerk_event is commented'
);

-- The dedup table (D1, D5, D6) ----------------------------------------------------

select has_pk('public', 'clerk_webhook_events', 'clerk_webhook_events has a primary key');
select col_is_pk('public', 'clerk_webhook_events', 'svix_id', 'svix_id is the primary key');
select ok(
    (select c.relrowsecurity from pg_class as c where c.oid = 'public.clerk_webhook_events'::regclass),
    'clerk_webhook_events has row level security enabled'
);
select is_empty(
    $$select policyname from pg_policies where schemaname = 'public' and tablename = 'clerk_webhook_events'$$,
    'no policy opens clerk_webhook_events'
);
select table_privs_are(
    'public', 'clerk_webhook_events', 'anon', array[]::text[], 'anon has no privilege on clerk_webhook_events'
);
select table_privs_are(
    'public', 'clerk_webhook_events', 'authenticated', array[]::text[],
    'authenticated has no privilege on clerk_webhook_events'
);
select table_privs_are(
    'public', 'clerk_webhook_events', 'service_role', array['SELECT'],
    'service_role may only read clerk_webhook_events (apply_clerk_event writes)'
);

-- Signed-in users and anon cannot call it --------------------------------------------

select tests.act_as_user('user_mallory');
select throws_ok(
    $$select public.apply_clerk_event('msg_forged', '{"type": "organization.created", "data": {"id": "org_x"}}')$$,
    '42501',
    'permission denied for function apply_clerk_event',
    'a signed-in user cannot apply Clerk events'
);
select tests.act_as_anon();
select throws_ok(
    $$select public.apply_clerk_event('msg_forged', '{"type": "organization.created", "data": {"id": "org_x"}}')$$,
    '42501',
    'permission denied for function apply_clerk_event',
    'anon cannot apply Clerk events'
);
select tests.reset_role();

-- Organizations -------------------------------------------------------------------------

select tests.act_as_service_role();

select is(
    (public.apply_clerk_event(
        'msg_org_1', pg_temp.org_event('organization.created', 'org_acme', 'Acme Inc', 1000, 'user_alice')
    )).applied,
    true,
    'organization.created is applied'
);
select is(
    (select name from public.organizations where clerk_org_id = 'org_acme'),
    'Acme Inc',
    'organization.created creates the organization'
);
select is(
    (public.apply_clerk_event(
        'msg_org_2', pg_temp.org_event('organization.updated', 'org_acme', 'Acme Corp', 2000, 'user_alice')
    )).applied,
    true,
    'organization.updated is applied'
);
select is(
    (select name from public.organizations where clerk_org_id = 'org_acme'),
    'Acme Corp',
    'organization.updated renames the organization'
);
select is(
    (public.apply_clerk_event(
        'msg_org_0', pg_temp.org_event('organization.updated', 'org_acme', 'Acme Old', 1500, 'user_alice')
    )).outcome,
    'stale',
    'an organization.updated older than the applied one is stale'
);
select is(
    (select name from public.organizations where clerk_org_id = 'org_acme'),
    'Acme Corp',
    'a stale event changes nothing'
);

-- Memberships -> users and seats ----------------------------------------------------------

select is(
    (public.apply_clerk_event(
        'msg_m_alice',
        pg_temp.member_event(
            'organizationMembership.created', 'org_acme', 'user_alice', 'org:admin', 3000,
            'alice@example.com', 'user_alice'
        )
    )).seat_status,
    'active',
    'organizationMembership.created gives an active seat'
);
select is(pg_temp.seat('org_acme', 'user_alice'), 'owner/active', 'the creator holding org:admin is the owner');
select is(
    (select email from public.users where clerk_user_id = 'user_alice'),
    'alice@example.com',
    'the user is created with public_user_data.identifier as email'
);

select lives_ok(
    $$select public.apply_clerk_event('msg_m_bob',
        pg_temp.member_event('organizationMembership.created', 'org_acme', 'user_bob', 'org:member', 3000))$$,
    'a member joins'
);
select is(pg_temp.seat('org_acme', 'user_bob'), 'member/active', 'org:member maps to an active member seat');
select lives_ok(
    $$select public.apply_clerk_event('msg_m_carol',
        pg_temp.member_event('organizationMembership.created', 'org_acme', 'user_carol', 'org:admin', 3000))$$,
    'an admin joins'
);
select is(pg_temp.seat('org_acme', 'user_carol'), 'admin/active', 'org:admin (not the creator) maps to admin');
select lives_ok(
    $$select public.apply_clerk_event('msg_m_phone',
        pg_temp.member_event('organizationMembership.created', 'org_acme', 'user_phone', 'admin', 3000,
            '+15555550100'))$$,
    'a member identified by phone number joins (legacy role name admin)'
);
select is(pg_temp.seat('org_acme', 'user_phone'), 'admin/active', 'the legacy admin role maps to admin');
select is(
    (select email from public.users where clerk_user_id = 'user_phone'),
    null,
    'an identifier that is not an email address is not stored as email'
);

-- Role change keeps the status.
select lives_ok(
    $$select public.set_seat_status('org_acme', 'user_carol', 'suspended')$$,
    'an operator suspends a seat'
);
select is(
    (public.apply_clerk_event(
        'msg_m_carol_2',
        pg_temp.member_event('organizationMembership.updated', 'org_acme', 'user_carol', 'org:member', 4000)
    )).seat_role,
    'member',
    'organizationMembership.updated changes the role'
);
select is(pg_temp.seat('org_acme', 'user_carol'), 'member/suspended', 'and keeps the seat''s status');
select is(
    (public.apply_clerk_event(
        'msg_m_alice_2',
        pg_temp.member_event('organizationMembership.updated', 'org_acme', 'user_alice', 'org:admin', 4000)
    )).seat_role,
    'owner',
    'an owner stays owner while Clerk says admin'
);

-- Deduplication by svix-id.
select lives_ok(
    $$select public.set_seat_status('org_acme', 'user_bob', 'pending')$$,
    'bob''s seat is set to pending'
);
select is(
    (
        select row(r.applied, r.duplicate, r.outcome, r.reason, r.svix_id, r.type, r.seat_status)::text
        from
            public.apply_clerk_event(
                'msg_m_bob',
                pg_temp.member_event('organizationMembership.created', 'org_acme', 'user_bob', 'org:member', 3000)
            ) as r
    ),
    '(f,t,duplicate,,msg_m_bob,organizationMembership.created,)',
    'a repeated svix-id is a duplicate: not applied, no reason, nothing about the seat'
);
select is(pg_temp.seat('org_acme', 'user_bob'), 'member/pending', 'a duplicate changes nothing');
select is(
    (select count(*)::int from public.clerk_webhook_events where svix_id = 'msg_m_bob'),
    1,
    'a svix-id is recorded once'
);
select lives_ok(
    $$select public.set_seat_status('org_acme', 'user_bob', 'active')$$,
    'bob''s seat is active again'
);

-- Membership deleted -> seat revoked -> no_active_seat.
select lives_ok(
    $$insert into public.organization_subscriptions (organization_id, stripe_subscription_id, status)
      select id, 'sub_acme', 'active' from public.organizations where clerk_org_id = 'org_acme'$$,
    'Acme has an active subscription'
);
select is(
    (public.grant_credits(100, 'pool', p_clerk_org_id => 'org_acme')).ok,
    true,
    'Acme''s pool holds credits'
);
select is(
    (public.deduct_credits_pooled('user_bob', 1, 'usage', 'org_acme')).ok,
    true,
    'bob spends from the pool while a member'
);
select is(
    (public.apply_clerk_event(
        'msg_m_bob_del',
        pg_temp.member_event('organizationMembership.deleted', 'org_acme', 'user_bob', 'org:member', 5000)
    )).seat_status,
    'revoked',
    'organizationMembership.deleted revokes the seat'
);
select is(pg_temp.seat('org_acme', 'user_bob'), 'member/revoked', 'the seat row stays, revoked');
select is(
    (public.deduct_credits_pooled('user_bob', 1, 'usage', 'org_acme')).reason,
    'no_active_seat',
    'the next deduction with a stale org token is refused: no_active_seat'
);
select is(
    public.resolve_org_attribution('user_bob', 'org_acme'),
    null,
    'and the next token issued is personal (no attribution)'
);
select is(
    (public.apply_clerk_event(
        'msg_m_bob_late',
        pg_temp.member_event('organizationMembership.updated', 'org_acme', 'user_bob', 'org:admin', 4500)
    )).outcome,
    'stale',
    'an update from before the deletion, delivered after it, is stale'
);
select is(pg_temp.seat('org_acme', 'user_bob'), 'member/revoked', 'and does not bring the seat back');
select lives_ok(
    $$select public.apply_clerk_event('msg_m_bob_back',
        pg_temp.member_event('organizationMembership.created', 'org_acme', 'user_bob', 'org:member', 6000))$$,
    'bob is invited back'
);
select is(pg_temp.seat('org_acme', 'user_bob'), 'member/active', 'a new membership re-activates the seat');

-- user.deleted revokes every seat of the user.
select is(
    (public.apply_clerk_event(
        'msg_u_phone_del',
        '{"type": "user.deleted", "object": "event", "timestamp": 7000,
          "data": {"id": "user_phone", "object": "user", "deleted": true}}'
    )).seats_revoked,
    1,
    'user.deleted revokes the user''s seats'
);
select is(pg_temp.seat('org_acme', 'user_phone'), 'admin/revoked', 'the deleted user''s seat is revoked');

-- Organization deleted -> every seat revoked, later events ignored.
select is(
    (public.apply_clerk_event(
        'msg_org_del', pg_temp.org_event('organization.deleted', 'org_acme', null, 8000)
    )).seats_revoked,
    3,
    'organization.deleted revokes every remaining seat'
);
select is(
    (
        select count(*)::int
        from public.organization_seats as s
        inner join public.organizations as o on s.organization_id = o.id
        where o.clerk_org_id = 'org_acme' and s.status <> 'revoked'
    ),
    0,
    'no seat of the deleted organization is left unrevoked'
);
select is(
    (public.apply_clerk_event(
        'msg_m_dave',
        pg_temp.member_event('organizationMembership.created', 'org_acme', 'user_dave', 'org:member', 9000)
    )).reason,
    'organization_deleted',
    'a membership event for a deleted organization is ignored'
);
select is(pg_temp.seat('org_acme', 'user_dave'), null, 'and creates no seat');
select is(
    (public.deduct_credits_pooled('user_alice', 1, 'usage', 'org_acme')).reason,
    'no_active_seat',
    'nobody spends a deleted organization''s pool'
);

-- Memberships before the organization event; unknown types ---------------------------------

select is(
    (public.apply_clerk_event(
        'msg_m_new', pg_temp.member_event('organizationMembership.created', 'org_new', 'user_erin', 'org:member', 100)
    )).applied,
    true,
    'a membership of an organization not seen yet is applied'
);
select is(
    (select name from public.organizations where clerk_org_id = 'org_new'),
    'Acme Inc',
    'the organization is created from the membership''s payload'
);
select is(
    (public.apply_clerk_event('msg_session', '{"type": "session.created", "data": {"id": "sess_1"}}')).outcome,
    'ignored',
    'an unhandled event type is recorded as ignored'
);

-- The dispatcher: one private function per event type --------------------------------------
-- Routing is observed, not inferred: with track_functions on, the transaction's
-- own counters (pg_stat_xact_user_functions) say which private.clerk_* function
-- each delivery called.

select tests.reset_role();
set local track_functions = 'pl';

create function pg_temp.routed_to(p_svix_id text, p_event jsonb)
returns text
language plpgsql
as $$
declare
    v_before jsonb;
    v_routed text;
begin
    select coalesce(jsonb_object_agg(f.funcname, f.calls), '{}'::jsonb) into v_before
    from pg_stat_xact_user_functions as f
    where f.schemaname = 'private' and f.funcname like 'clerk\_%' and f.funcname <> 'clerk_event_subject';
    perform public.apply_clerk_event(p_svix_id, p_event);
    select string_agg(f.funcname, ',' order by f.funcname) into v_routed
    from pg_stat_xact_user_functions as f
    where
        f.schemaname = 'private' and f.funcname like 'clerk\_%' and f.funcname <> 'clerk_event_subject'
        and f.calls > coalesce((v_before ->> f.funcname)::bigint, 0);
    return coalesce(v_routed, 'none');
end
$$;

select is(
    pg_temp.routed_to('route_1', pg_temp.org_event('organization.created', 'org_route', 'Route Inc', 20001)),
    'clerk_organization_upserted',
    'organization.created goes to private.clerk_organization_upserted'
);
select is(
    pg_temp.routed_to('route_2', pg_temp.org_event('organization.updated', 'org_route', 'Route Corp', 20002)),
    'clerk_organization_upserted',
    'organization.updated goes to private.clerk_organization_upserted'
);
select is(
    pg_temp.routed_to(
        'route_3',
        pg_temp.member_event('organizationMembership.created', 'org_route', 'user_route', 'org:member', 20003)
    ),
    'clerk_membership_upserted',
    'organizationMembership.created goes to private.clerk_membership_upserted'
);
select is(
    pg_temp.routed_to(
        'route_4',
        pg_temp.member_event('organizationMembership.updated', 'org_route', 'user_route', 'org:admin', 20004)
    ),
    'clerk_membership_upserted',
    'organizationMembership.updated goes to private.clerk_membership_upserted'
);
select is(
    pg_temp.routed_to(
        'route_5',
        pg_temp.member_event('organizationMembership.deleted', 'org_route', 'user_route', 'org:admin', 20005)
    ),
    'clerk_membership_deleted',
    'organizationMembership.deleted goes to private.clerk_membership_deleted'
);
select is(
    pg_temp.routed_to(
        'route_6', pg_temp.user_event('user.updated', 'user_route', 20006, '{"first_name": "Rou"}')
    ),
    'clerk_user_updated',
    'user.updated goes to private.clerk_user_updated'
);
select is(
    pg_temp.routed_to('route_7', pg_temp.user_event('user.deleted', 'user_route', 20007, '{"deleted": true}')),
    'clerk_user_deleted',
    'user.deleted goes to private.clerk_user_deleted'
);
select is(
    pg_temp.routed_to('route_8', pg_temp.org_event('organization.deleted', 'org_route', null, 20008)),
    'clerk_organization_deleted',
    'organization.deleted goes to private.clerk_organization_deleted'
);
select is(
    pg_temp.routed_to('route_9', '{"type": "email.created", "data": {"id": "ema_1"}}'),
    'none',
    'an unhandled type calls no event function, and raises nothing'
);
select is(
    (
        select row(r.applied, r.duplicate, r.outcome, r.reason, r.clerk_org_id, r.clerk_user_id)::text
        from public.apply_clerk_event('route_10', '{"type": "waitlistEntry.created", "data": {}}') as r
    ),
    '(f,f,ignored,unhandled_type,,)',
    'an unhandled type is a value: not applied, outcome ignored, reason unhandled_type'
);
select is(
    pg_temp.routed_to(
        'route_3',
        pg_temp.member_event('organizationMembership.created', 'org_route', 'user_route', 'org:member', 20003)
    ),
    'none',
    'a duplicate delivery calls no event function'
);
select is(
    pg_temp.routed_to(
        'route_11',
        pg_temp.member_event('organizationMembership.updated', 'org_route', 'user_route', 'org:admin', 20000)
    ),
    'none',
    'a stale delivery calls no event function'
);

select function_returns(
    'public', 'apply_clerk_event', array['text', 'jsonb'], 'clerk_event_result',
    'apply_clerk_event returns public.clerk_event_result'
);

-- The private functions: nobody but apply_clerk_event (their owner) calls them.
select
    function_privs_are(
        'private', f.name, f.args, r.role_name, array[]::text[],
        pg_catalog.format('%s may not execute private.%s', r.role_name, f.name)
    )
from (
    values
    ('clerk_event_subject'::name, array['text', 'jsonb']::name[]),
    ('clerk_organization_upserted', array['clerk_event_result', 'jsonb']),
    ('clerk_organization_deleted', array['clerk_event_result', 'timestamp with time zone']),
    ('clerk_membership_upserted', array['clerk_event_result', 'jsonb', 'timestamp with time zone']),
    ('clerk_membership_deleted', array['clerk_event_result', 'timestamp with time zone']),
    ('clerk_user_updated', array['clerk_event_result', 'jsonb']),
    ('clerk_user_deleted', array['clerk_event_result', 'timestamp with time zone']),
    ('seat_status_kept', array['organization_seats', 'timestamp with time zone']),
    ('revoke_user_credentials', array['text'])
) as f (name, args)
cross join (values ('anon'::name), ('authenticated'), ('service_role')) as r (role_name)
order by f.name, r.role_name;
select is(
    (
        select string_agg(p.proname, ', ' order by p.proname)
        from pg_proc as p
        where
            p.pronamespace = 'private'::regnamespace
            and (p.proname like 'clerk\_%' or p.proname in ('seat_status_kept', 'revoke_user_credentials'))
            and (p.prosecdef or p.proconfig is distinct from array['search_path=""'] or p.proacl is null)
    ),
    null,
    'every private Clerk function runs as invoker with an empty search_path and explicit grants'
);
select is(
    (
        select count(*)::int
        from pg_proc as p
        where p.pronamespace = 'private'::regnamespace and p.proname like 'clerk\_%'
    ),
    7,
    'the subject function and one function per Clerk event (created and updated share one)'
);

select tests.act_as_service_role();

-- Malformed events: SQLSTATE 22023 -----------------------------------------------------------

select throws_ok(
    $$select public.apply_clerk_event('', '{"type": "x", "data": {}}')$$,
    '22023', 'p_svix_id is required (at most 255 characters)', 'an empty svix-id is refused'
);
select throws_ok(
    $$select public.apply_clerk_event('msg_bad_1', '[1]')$$,
    '22023', 'p_event must be a JSON object', 'an event that is not an object is refused'
);
select throws_ok(
    $$select public.apply_clerk_event('msg_bad_2', '{"data": {}}')$$,
    '22023', 'p_event.type is required', 'an event without type is refused'
);
select throws_ok(
    $$select public.apply_clerk_event('msg_bad_3', '{"type": "organization.created", "data": {"name": "X"}}')$$,
    '22023', 'p_event.data.id (the organization id) is required', 'an organization event without id is refused'
);
select throws_ok(
    $$select public.apply_clerk_event('msg_bad_4',
        '{"type": "organizationMembership.created", "data": {"organization": {"id": "org_z"}}}')$$,
    '22023', 'p_event.data.public_user_data.user_id is required', 'a membership event without user is refused'
);
select is(
    (select count(*)::int from public.clerk_webhook_events where svix_id like 'msg_bad_%'),
    0,
    'a refused event is not recorded, so a corrected retry is not a duplicate'
);

select tests.reset_role();
select * from finish();
rollback;
