-- The seat state machine (docs/database.md, SECURITY.md L1): every edge, by
-- actor. Clerk events (apply_clerk_event) move seats in and out of the org;
-- manual changes (set_seat_status: an org admin through the issuer, or the
-- service) suspend, revoke and reinstate. A manual suspended/revoked is a hold
-- no Clerk event lifts, and manual changes are ordered with Clerk's events.
begin;
select plan(39);

-- Event time relative to the transaction's now() (the time of every manual
-- change in this file), in milliseconds, as Clerk sends it.
create function pg_temp.at(p_seconds integer)
returns bigint
language sql
as $$
    select (extract(epoch from now()) * 1000)::bigint + p_seconds * 1000
$$;

create function pg_temp.member(p_type text, p_user text, p_seconds integer)
returns jsonb
language sql
as $$
    select jsonb_build_object(
        'type', p_type,
        'object', 'event',
        'timestamp', pg_temp.at(p_seconds),
        'data', jsonb_build_object(
            'id', 'orgmem_' || p_user,
            'object', 'organization_membership',
            'role', 'org:member',
            'organization', jsonb_build_object('id', 'org_sm', 'name', 'State Machine Inc'),
            'public_user_data', jsonb_build_object('user_id', p_user, 'identifier', p_user || '@example.org')
        )
    )
$$;

create function pg_temp.status(p_user text)
returns text
language sql
as $$
    select s.status || '/' || s.status_changed_by
    from public.organization_seats as s
    inner join public.organizations as o on s.organization_id = o.id
    inner join public.users as u on s.user_id = u.id
    where o.clerk_org_id = 'org_sm' and u.clerk_user_id = p_user
$$;

grant execute on function pg_temp.at(integer) to service_role;
grant execute on function pg_temp.member(text, text, integer) to service_role;
grant execute on function pg_temp.status(text) to service_role;

-- A pool to spend, so "may spend" is checked the way the API checks it.
insert into public.organizations (clerk_org_id, name) values ('org_sm', 'State Machine Inc');
insert into public.organization_subscriptions (organization_id, stripe_subscription_id, status)
select
    id,
    'sub_sm' as stripe_subscription_id,
    'active' as status
from public.organizations where clerk_org_id = 'org_sm';
select tests.act_as_service_role();
select is((public.grant_credits(100, 'pool', p_clerk_org_id => 'org_sm')).ok, true, 'the pool holds credits');

-- (none) -> active: Clerk membership.created --------------------------------------
select is(
    (
        public.apply_clerk_event('sm_1', pg_temp.member('organizationMembership.created', 'user_sue', -100))
    ).seat_status,
    'active',
    'L1: (none) -> active by organizationMembership.created'
);
select is(pg_temp.status('user_sue'), 'active/clerk', 'L1: the change is stamped as Clerk''s');

-- active -> suspended: manual -------------------------------------------------------
select is(
    (public.set_seat_status('org_sm', 'user_sue', 'suspended')).status_changed_by,
    'manual',
    'L1: active -> suspended by set_seat_status (an org admin through the issuer), stamped manual'
);
select is(
    (public.deduct_credits_pooled('user_sue', 1, 'usage', 'org_sm')).reason,
    'no_active_seat',
    'L1: a suspended seat does not spend'
);

-- The hold: leave -> rejoin after a suspension -------------------------------------
select is(
    (
        public.apply_clerk_event('sm_2', pg_temp.member('organizationMembership.deleted', 'user_sue', -40))
    ).seat_status_kept,
    'held_by_suspended',
    'L1: suspended (manual) stays suspended when the member leaves in Clerk'
);
select is(pg_temp.status('user_sue'), 'suspended/manual', 'L1: the hold is still manual after the leave');
select is(
    (
        public.apply_clerk_event('sm_3', pg_temp.member('organizationMembership.created', 'user_sue', -30))
    ).seat_status,
    'suspended',
    'L1: leave -> rejoin (re-invited or auto-joined) does not lift a suspension'
);
select is(
    (public.deduct_credits_pooled('user_sue', 1, 'usage', 'org_sm')).reason,
    'no_active_seat',
    'L1: the rejoined, suspended member still cannot spend the pool'
);
select is(
    public.resolve_org_attribution('user_sue', 'org_sm'),
    null,
    'L1: and gets no org attribution'
);
select is(
    (
        public.apply_clerk_event('sm_4', pg_temp.member('organizationMembership.updated', 'user_sue', -20))
    ).seat_status,
    'suspended',
    'L1: organizationMembership.updated never changes a status'
);

-- Lifting a hold: manual only --------------------------------------------------------
select is(
    (public.set_seat_status('org_sm', 'user_sue', 'active')).status,
    'active',
    'L1: suspended -> active only by a manual reinstatement (set_seat_status)'
);
select is(
    (public.deduct_credits_pooled('user_sue', 1, 'usage', 'org_sm')).ok,
    true,
    'L1: the reinstated seat spends again'
);

-- A late, older event: sent before the admin's change, delivered after it ----------
select lives_ok(
    $$select public.set_seat_status('org_sm', 'user_sue', 'suspended')$$,
    'L1: the admin suspends again'
);
select is(
    (
        public.apply_clerk_event('sm_5', pg_temp.member('organizationMembership.created', 'user_sue', -5))
    ).seat_status,
    'suspended',
    'L1: a membership.created sent before the suspension and delivered after it does not undo it'
);
select lives_ok(
    $$select public.set_seat_status('org_sm', 'user_sue', 'active')$$,
    'L1: the admin reinstates'
);
select is(
    (
        public.apply_clerk_event('sm_6', pg_temp.member('organizationMembership.deleted', 'user_sue', -4))
    ).seat_status_kept,
    'older_than_seat_change',
    'L1: a membership.deleted older than the reinstatement does not revoke it'
);
select is(pg_temp.status('user_sue'), 'active/manual', 'L1: the seat stays active (manual)');

-- pending (manual, invited) -> active by Clerk; ordering ------------------------------
insert into public.users (clerk_user_id) values ('user_pat');
insert into public.organization_seats (organization_id, user_id, status)
select
    o.id as organization_id,
    u.id as user_id,
    'pending' as status
from public.organizations as o, public.users as u
where o.clerk_org_id = 'org_sm' and u.clerk_user_id = 'user_pat';
select is(pg_temp.status('user_pat'), 'pending/manual', 'L1: (none) -> pending by the service (an invitation), manual');
select is(
    (
        public.apply_clerk_event('sm_7', pg_temp.member('organizationMembership.created', 'user_pat', -5))
    ).seat_status,
    'pending',
    'L1: a membership.created older than the invitation leaves the seat pending'
);
select is(
    (
        public.apply_clerk_event('sm_8', pg_temp.member('organizationMembership.created', 'user_pat', 5))
    ).seat_status,
    'active',
    'L1: pending -> active by a newer organizationMembership.created (the invitation accepted)'
);

-- active -> revoked by Clerk (left), and back -----------------------------------------
select is(
    (
        public.apply_clerk_event('sm_9', pg_temp.member('organizationMembership.deleted', 'user_pat', 10))
    ).seat_status,
    'revoked',
    'L1: active -> revoked by organizationMembership.deleted'
);
select is(pg_temp.status('user_pat'), 'revoked/clerk', 'L1: a Clerk revocation is not a hold');
select is(
    (
        public.apply_clerk_event('sm_10', pg_temp.member('organizationMembership.created', 'user_pat', 20))
    ).seat_status,
    'active',
    'L1: revoked (by Clerk) -> active when the member rejoins'
);

-- active -> revoked manually: a hold ---------------------------------------------------
select is(
    (public.set_seat_status('org_sm', 'user_pat', 'revoked')).status,
    'revoked',
    'L1: active -> revoked by set_seat_status'
);
select is(
    (
        public.apply_clerk_event('sm_11', pg_temp.member('organizationMembership.deleted', 'user_pat', 30))
    ).seat_status_kept,
    'held_by_revoked',
    'L1: a manual revocation survives the member leaving'
);
select is(
    (
        public.apply_clerk_event('sm_12', pg_temp.member('organizationMembership.created', 'user_pat', 40))
    ).seat_status,
    'revoked',
    'L1: revoked (manual) stays revoked when the member rejoins'
);
select is(
    (public.deduct_credits_pooled('user_pat', 1, 'usage', 'org_sm')).reason,
    'no_active_seat',
    'L1: the revoked member cannot spend after rejoining'
);
select is(
    (public.set_seat_status('org_sm', 'user_pat', 'pending')).status,
    'pending',
    'L1: revoked -> pending by set_seat_status lifts the hold (re-invite)'
);
select is(
    (
        public.apply_clerk_event('sm_13', pg_temp.member('organizationMembership.created', 'user_pat', 50))
    ).seat_status,
    'active',
    'L1: and the next membership.created seats the member'
);

-- Re-setting the status Clerk set makes it a hold ------------------------------------
insert into public.users (clerk_user_id) values ('user_rex');
select lives_ok(
    $$select public.apply_clerk_event('sm_14', pg_temp.member('organizationMembership.created', 'user_rex', -100))$$,
    'rex joins'
);
select lives_ok(
    $$select public.apply_clerk_event('sm_15', pg_temp.member('organizationMembership.deleted', 'user_rex', -90))$$,
    'rex leaves (revoked by Clerk)'
);
select is(
    (public.set_seat_status('org_sm', 'user_rex', 'revoked')).status_changed_by,
    'manual',
    'L1: revoked (Clerk) -> revoked (manual): an admin confirms the revocation, now a hold'
);
select is(
    (
        public.apply_clerk_event('sm_16', pg_temp.member('organizationMembership.created', 'user_rex', 10))
    ).seat_status,
    'revoked',
    'L1: and a rejoin does not bring it back'
);

-- The stamps cannot be forged by the service role ------------------------------------
select throws_ok(
    $$update public.organization_seats set status_changed_by = 'clerk'$$,
    '42501',
    null,
    'L1: the service role cannot write status_changed_by'
);
select lives_ok(
    $$update public.organization_seats as s set status = 'suspended'
      from public.users as u where s.user_id = u.id and u.clerk_user_id = 'user_pat'$$,
    'a direct service-role status update is allowed'
);
select is(pg_temp.status('user_pat'), 'suspended/manual', 'L1: and is stamped manual: a hold like set_seat_status');

-- Terminal: organization.deleted / user.deleted revoke every seat ---------------------
select is(
    (public.apply_clerk_event(
        'sm_17',
        jsonb_build_object(
            'type', 'user.deleted', 'timestamp', pg_temp.at(60),
            'data', jsonb_build_object('id', 'user_sue', 'object', 'user', 'deleted', true)
        )
    )).seats_revoked,
    1,
    'L1: any -> revoked by user.deleted (Clerk)'
);
select is(
    (
        public.apply_clerk_event('sm_18', pg_temp.member('organizationMembership.created', 'user_sue', 70))
    ).reason,
    'user_deleted',
    'L1: a deleted user''s seat never comes back'
);

select * from finish();
rollback;
