-- Seat overview: every seat a user holds, with the organization's name and the
-- seat's status, for the issuer's pages (the org picker of /vscode/authorize
-- and the org selector of /dashboard/tokens).
--
-- The pages list the organizations Clerk says the user belongs to and show
-- each with its seat from here: selectable only when the database says so.
-- Whether a seat may be used is decided here, by the same rule as
-- resolve_org_attribution (status active), so Python never decides it.

create function public.seat_overview(p_clerk_user_id text)
returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
    select
        coalesce(
            pg_catalog.jsonb_agg(
                pg_catalog.jsonb_build_object(
                    'clerk_org_id', o.clerk_org_id,
                    'organization_name', o.name,
                    'seat_role', s.role,
                    'seat_status', s.status,
                    'selectable', private.seat_allows_spending(s.status)
                )
                order by o.name, o.clerk_org_id
            ),
            '[]'::jsonb
        )
    from public.users as u
    inner join public.organization_seats as s
        on u.id = s.user_id
    inner join public.organizations as o
        on s.organization_id = o.id
    where u.clerk_user_id = p_clerk_user_id
$$;

revoke all on function public.seat_overview(text) from public, anon, authenticated, service_role;
grant execute on function public.seat_overview(text) to service_role;

comment on function public.seat_overview(text) is
'Every seat of the user, whatever its status, as a JSON array of {clerk_org_id, '
'organization_name, seat_role, seat_status, selectable}, ordered by organization name; '
'[] for an unknown user. selectable is true exactly when the seat is active, the rule '
'resolve_org_attribution applies, so an org picker offers what a token could carry. '
'Service role only (the issuer''s pages); security definer, because selectable comes from '
'private.seat_allows_spending, which the service role may not call itself.';
