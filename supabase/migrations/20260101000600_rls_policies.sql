-- Who reads what (role authenticated; identity = auth.jwt() ->> 'sub', the
-- Clerk user id). anon holds no grant on these tables, and service_role
-- bypasses RLS. Nobody writes through a policy: there are no insert, update
-- or delete policies, and only service_role holds (column-level) write grants.
--
--   table                       a signed-in user reads
--   users                       their own row
--   organizations               the orgs where they hold an active seat
--   organization_seats          their own seats; all seats of orgs they administer
--   organization_subscriptions  the subscriptions of orgs they administer
--   credit_transactions         their own rows; all rows of orgs they administer
--
-- "Administer" = an active seat with role owner or admin.
--
-- The helpers below are security definer so that a policy can look at seats
-- without recursing into the seats policy. They are executable by
-- authenticated (policies run as the caller) but live in schema private,
-- which the API does not expose; they return only the caller's own ids.
-- Each is called as (select ...) or = any(array(select ...)), so it runs
-- once per statement, not once per row, and the filter stays an index
-- condition (= any of an array can use the ledger's indexes in a BitmapOr;
-- "in (select ...)" would become a hashed subplan and a sequential scan).

create function private.current_app_user_id()
returns uuid
language sql
stable
security definer
set search_path = ''
as $$
    select u.id
    from public.users as u
    where u.clerk_user_id = (select auth.jwt()) ->> 'sub'
$$;

revoke all on function private.current_app_user_id() from public, anon, service_role;
grant execute on function private.current_app_user_id() to authenticated;

comment on function private.current_app_user_id() is
'users.id of the signed-in caller (auth.jwt() ->> ''sub''), or null. For RLS policies. '
'Security definer: reads users without the users policy; returns only the caller''s own id.';

create function private.admin_organization_ids()
returns setof uuid
language sql
stable
security definer
set search_path = ''
as $$
    select s.organization_id
    from public.organization_seats as s
    inner join public.users as u on s.user_id = u.id
    where
        u.clerk_user_id = (select auth.jwt()) ->> 'sub'
        and private.seat_allows_spending(s.status)
        and s.role in ('owner', 'admin')
$$;

revoke all on function private.admin_organization_ids() from public, anon, service_role;
grant execute on function private.admin_organization_ids() to authenticated;

comment on function private.admin_organization_ids() is
'Organizations where the signed-in caller holds an active owner or admin seat. For RLS '
'policies. Security definer: reading seats inside the seats policy would recurse.';

create function private.member_organization_ids()
returns setof uuid
language sql
stable
security definer
set search_path = ''
as $$
    select s.organization_id
    from public.organization_seats as s
    inner join public.users as u on s.user_id = u.id
    where
        u.clerk_user_id = (select auth.jwt()) ->> 'sub'
        and private.seat_allows_spending(s.status)
$$;

revoke all on function private.member_organization_ids() from public, anon, service_role;
grant execute on function private.member_organization_ids() to authenticated;

comment on function private.member_organization_ids() is
'Organizations where the signed-in caller holds an active seat (any role). For RLS policies. '
'Security definer for the same reason as admin_organization_ids.';

-- Policies ---------------------------------------------------------------------

create policy "users read their own row"
on public.users
for select
to authenticated
using (clerk_user_id = (select auth.jwt()) ->> 'sub');

create policy "seat holders read their organizations"
on public.organizations
for select
to authenticated
using (id = any(array(select private.member_organization_ids())));

create policy "users read their own and admins their org's seats"
on public.organization_seats
for select
to authenticated
using (
    user_id = (select private.current_app_user_id())
    or organization_id = any(array(select private.admin_organization_ids()))
);

create policy "admins read their org's subscriptions"
on public.organization_subscriptions
for select
to authenticated
using (organization_id = any(array(select private.admin_organization_ids())));

create policy "users read their own and admins their org's transactions"
on public.credit_transactions
for select
to authenticated
using (
    user_id = (select private.current_app_user_id())
    or organization_id = any(array(select private.admin_organization_ids()))
);
