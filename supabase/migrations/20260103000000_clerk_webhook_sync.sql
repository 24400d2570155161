-- Clerk webhook sync: Clerk's organization and membership events keep
-- organizations, users and seats true.
--
-- The clerk-webhooks edge function verifies the Svix signature over the raw
-- body and hands each event, with its svix-id, to apply_clerk_event (service
-- role only). Every rule lives here. apply_clerk_event is a dispatcher: it
-- checks the input, finds what the event is about
-- (private.clerk_event_subject), takes the locks, decides stale / ignored,
-- records the delivery (deduplication), and then calls the one private
-- function of the event type (private.clerk_organization_upserted,
-- clerk_organization_deleted, clerk_membership_upserted,
-- clerk_membership_deleted, clerk_user_updated, clerk_user_deleted). It
-- returns public.clerk_event_result; a malformed event raises 22023.
--
-- * Deduplication: one row per svix-id in clerk_webhook_events; a repeated
--   delivery (Svix retries) changes nothing and says duplicate.
-- * Ordering: Svix does not promise order. Each event is about one object
--   (an organization, a user, or a seat = organization + user) and carries
--   Clerk's timestamp; an event older than the newest applied event about
--   the same object is recorded as stale and changes nothing. Events about
--   one object are serialized with advisory locks.
-- * organization.created / .updated: upsert the organization (name).
-- * organization.deleted: every seat of the organization is revoked (the row
--   stays: the ledger points at it); later membership events for it are
--   ignored.
-- * Holds (SECURITY.md L1): a seat that was suspended or revoked by hand
--   (set_seat_status: an org admin through the issuer, or the service;
--   organization_seats.status_changed_by = 'manual') is held. No Clerk event
--   changes a held seat's status: leaving the org and being re-invited (or
--   auto-joining by verified domain) does not bring it back. Only another
--   manual change (set_seat_status active or pending) lifts a hold.
-- * Manual changes take part in the ordering: a membership event older than
--   the seat's last status change (organization_seats.status_changed_at)
--   does not change the status (it may still change the role).
-- * organizationMembership.created: upsert the user (email from
--   public_user_data.identifier when it is an email address, never
--   overwriting a known email) and the seat, status active (pending and
--   Clerk-revoked seats become active; held seats stay as they are).
-- * organizationMembership.updated: the seat's role follows Clerk; status
--   unchanged (a seat missing because .created was lost is created active).
-- * organizationMembership.deleted: the seat is revoked (a held seat stays
--   held), so the next deduction with a stale org token is refused
--   (no_active_seat) and the next token issued is personal.
-- * user.deleted: every seat of the user is revoked, the user is marked
--   deleted (users.deleted_at) and, in the same transaction, every live
--   extension token and refresh-token family of the user is revoked (L3).
-- * user.updated with banned or locked true: the user's extension tokens and
--   refresh-token families are revoked (L3); the user signs in again once
--   Clerk lets them. Other user.updated events change nothing.
-- * Roles: org:admin (and the legacy admin) -> admin; org:member, the legacy
--   basic_member and any custom role -> member. The organization's creator
--   (organization.created_by) holding org:admin -> owner, and an owner seat
--   stays owner while Clerk says admin (owner is ours, Clerk has no owner).
-- * Any other event type is recorded as ignored.

-- clerk_webhook_events -------------------------------------------------------

create table public.clerk_webhook_events (
    svix_id text primary key check (char_length(svix_id) between 1 and 255),
    type text not null check (char_length(type) between 1 and 255),
    clerk_object_id text check (char_length(clerk_object_id) <= 255),
    object_key text check (char_length(object_key) <= 600),
    event_at timestamptz,
    outcome text not null check (outcome in ('applied', 'stale', 'ignored')),
    received_at timestamptz not null default now()
);

-- The ordering check: newest applied event about an object.
create index clerk_webhook_events_object_key_event_at_idx
on public.clerk_webhook_events (object_key, event_at)
where outcome = 'applied';

-- Retention: operators purge old rows by received_at.
create index clerk_webhook_events_received_at_idx
on public.clerk_webhook_events (received_at);

alter table public.clerk_webhook_events enable row level security;
-- No policies: anon and authenticated read nothing. The service role may
-- look (it bypasses RLS); only apply_clerk_event writes.
revoke all on table public.clerk_webhook_events from public, anon, authenticated, service_role;
grant select on table public.clerk_webhook_events to service_role;

comment on table public.clerk_webhook_events is
'Every Clerk webhook delivery applied by apply_clerk_event, by svix-id (deduplication) with the '
'object it was about and Clerk''s timestamp (ordering). Written only by apply_clerk_event.';
comment on column public.clerk_webhook_events.svix_id is
'The svix-id header: unique per message, the same on every retry of it.';
comment on column public.clerk_webhook_events.clerk_object_id is
'data.id of the event (org_..., orgmem_..., user_...).';
comment on column public.clerk_webhook_events.object_key is
'What the event is about: org:<clerk_org_id>, user:<clerk_user_id> or seat:<clerk_org_id>:<clerk_user_id>; '
'null for ignored types.';
comment on column public.clerk_webhook_events.event_at is
'Clerk''s timestamp of the event (envelope timestamp, else data.updated_at).';
comment on column public.clerk_webhook_events.outcome is
'applied (changed or confirmed rows), stale (older than an applied event about the same object, '
'changed nothing) or ignored (type not handled, or its organization or user was deleted).';

-- Private helpers --------------------------------------------------------------

create function private.seat_status_kept(
    p_seat public.organization_seats,
    p_event_at timestamptz
)
returns text
language sql
stable
set search_path = ''
as $$
    -- Why a Clerk event may not move this seat's status (null: it may).
    select case
        when p_seat.id is null then null
        when p_seat.status_changed_by = 'manual' and p_seat.status in ('suspended', 'revoked')
            then 'held_by_' || p_seat.status
        when p_event_at < p_seat.status_changed_at then 'older_than_seat_change'
    end
$$;

revoke all on function private.seat_status_kept(public.organization_seats, timestamptz)
from public, anon, authenticated, service_role;

comment on function private.seat_status_kept(public.organization_seats, timestamptz) is
'Why a Clerk membership event may not change this seat''s status: held_by_suspended / '
'held_by_revoked (a manual hold, L1), older_than_seat_change (ordering), or null (it may).';

create function private.revoke_user_credentials(
    p_clerk_user_id text,
    out extension_tokens integer,
    out refresh_tokens integer
)
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_family uuid;
begin
    update public.extension_tokens as t
    set revoked_at = pg_catalog.now()
    where t.clerk_user_id = p_clerk_user_id and t.revoked_at is null;
    get diagnostics extension_tokens = row_count;

    -- Family locks first (the order rotate_refresh_token takes them), so a
    -- rotation under way cannot add a live token after this revocation.
    for v_family in
        select distinct r.family_id
        from public.refresh_tokens as r
        where r.clerk_user_id = p_clerk_user_id and r.revoked_at is null
        order by r.family_id
    loop
        perform private.lock_refresh_family(v_family);
    end loop;
    update public.refresh_tokens as r
    set revoked_at = pg_catalog.now(),
        revoked_reason = 'account_closed'
    where r.clerk_user_id = p_clerk_user_id and r.revoked_at is null;
    get diagnostics refresh_tokens = row_count;
end
$$;

revoke all on function private.revoke_user_credentials(text)
from public, anon, authenticated, service_role;

comment on function private.revoke_user_credentials(text) is
'Revokes every live extension token and refresh token of the user (L3: user.deleted, banned, '
'locked). Returns how many of each it revoked (extension_tokens, refresh_tokens).';

-- The result -------------------------------------------------------------------

create type public.clerk_event_result as (
    applied boolean,
    duplicate boolean,
    outcome text,
    reason text,
    svix_id text,
    type text,
    clerk_org_id text,
    clerk_user_id text,
    organization_id uuid,
    user_id uuid,
    seat_id uuid,
    seat_role text,
    seat_status text,
    seat_status_kept text,
    seats_revoked integer,
    extension_tokens_revoked integer,
    refresh_tokens_revoked integer
);

comment on type public.clerk_event_result is
'Result of apply_clerk_event. applied: the event changed or confirmed rows. duplicate: its svix-id '
'was seen before (nothing done). outcome: applied, stale, ignored or duplicate; reason, when not '
'applied: older_than_applied_event (stale), unhandled_type, organization_deleted or user_deleted '
'(ignored). svix_id, type: the delivery. clerk_org_id / clerk_user_id: what the event is about. '
'The rest is what the event type did: organization_id, user_id; seat_id, seat_role, seat_status '
'(the seat after a membership event) and seat_status_kept (why its status did not move: '
'held_by_suspended, held_by_revoked, older_than_seat_change); seats_revoked (organization.deleted, '
'user.deleted); extension_tokens_revoked and refresh_tokens_revoked (user.updated, user.deleted). '
'Null where the event type does not say.';

-- What an event is about ------------------------------------------------------------

create type private.clerk_subject as (
    clerk_org_id text,
    clerk_user_id text,
    object_key text
);

comment on type private.clerk_subject is
'What a Clerk event is about (private.clerk_event_subject): its organization and/or user and the '
'key its ordering and locks use (org:<id>, user:<id>, seat:<org>:<user>).';

create function private.clerk_event_subject(p_type text, p_data jsonb)
returns private.clerk_subject
language plpgsql
immutable
set search_path = ''
as $$
declare
    v_subject private.clerk_subject;
begin
    if p_type in ('organization.created', 'organization.updated', 'organization.deleted') then
        v_subject.clerk_org_id := p_data ->> 'id';
        if v_subject.clerk_org_id is null or v_subject.clerk_org_id = '' then
            raise exception 'p_event.data.id (the organization id) is required' using errcode = '22023';
        end if;
        v_subject.object_key := 'org:' || v_subject.clerk_org_id;
    elsif p_type in ('user.updated', 'user.deleted') then
        v_subject.clerk_user_id := p_data ->> 'id';
        if v_subject.clerk_user_id is null or v_subject.clerk_user_id = '' then
            raise exception 'p_event.data.id (the user id) is required' using errcode = '22023';
        end if;
        v_subject.object_key := 'user:' || v_subject.clerk_user_id;
    elsif p_type in (
        'organizationMembership.created', 'organizationMembership.updated', 'organizationMembership.deleted'
    ) then
        v_subject.clerk_org_id := p_data -> 'organization' ->> 'id';
        v_subject.clerk_user_id := p_data -> 'public_user_data' ->> 'user_id';
        if v_subject.clerk_org_id is null or v_subject.clerk_org_id = '' then
            raise exception 'p_event.data.organization.id is required' using errcode = '22023';
        end if;
        if v_subject.clerk_user_id is null or v_subject.clerk_user_id = '' then
            raise exception 'p_event.data.public_user_data.user_id is required' using errcode = '22023';
        end if;
        v_subject.object_key := 'seat:' || v_subject.clerk_org_id || ':' || v_subject.clerk_user_id;
    end if;
    -- Any other type: about nothing (object_key null), recorded as ignored.
    return v_subject;
end
$$;

revoke all on function private.clerk_event_subject(text, jsonb)
from public, anon, authenticated, service_role;

comment on function private.clerk_event_subject(text, jsonb) is
'What a Clerk event of type p_type is about, from its data: organization.* -> org:<data.id>, '
'user.* -> user:<data.id>, organizationMembership.* -> seat:<org>:<user>; other types: all null. '
'A handled type without its ids: SQLSTATE 22023 naming the missing field.';

-- One function per Clerk event type ------------------------------------------------
--
-- Each is called by apply_clerk_event only, after the delivery was recorded
-- as applied, under the locks of its subject. p_result arrives filled with
-- the delivery (applied, svix_id, type, clerk ids); each returns it with
-- what it did. Each takes only what it reads: the event's data (p_data)
-- and/or Clerk's time of the event (p_event_at).

create function private.clerk_organization_upserted(
    p_result public.clerk_event_result,
    p_data jsonb
)
returns public.clerk_event_result
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_result public.clerk_event_result := p_result;
    v_name text;
begin
    v_name := pg_catalog.left(pg_catalog.btrim(p_data ->> 'name'), 255);
    if v_name is null or v_name = '' then
        raise exception 'p_event.data.name is required' using errcode = '22023';
    end if;
    insert into public.organizations as o (clerk_org_id, name)
    values (p_result.clerk_org_id, v_name)
    on conflict (clerk_org_id) do update
        set name = excluded.name
    returning o.id into v_result.organization_id;
    return v_result;
end
$$;

revoke all on function private.clerk_organization_upserted(public.clerk_event_result, jsonb)
from public, anon, authenticated, service_role;

comment on function private.clerk_organization_upserted(public.clerk_event_result, jsonb) is
'organization.created and organization.updated: upsert the organization (data.name; missing: 22023). '
'Called by apply_clerk_event only.';

create function private.clerk_organization_deleted(
    p_result public.clerk_event_result,
    p_event_at timestamptz
)
returns public.clerk_event_result
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_result public.clerk_event_result := p_result;
begin
    -- The seats stay (the ledger points at them), revoked; later events for
    -- this organization are ignored (apply_clerk_event).
    select o.id into v_result.organization_id
    from public.organizations as o
    where o.clerk_org_id = p_result.clerk_org_id;
    update public.organization_seats as s
    set status = 'revoked',
        status_changed_at = coalesce(p_event_at, pg_catalog.now()),
        status_changed_by = 'clerk'
    where s.organization_id = v_result.organization_id and s.status <> 'revoked';
    get diagnostics v_result.seats_revoked = row_count;
    return v_result;
end
$$;

revoke all on function private.clerk_organization_deleted(public.clerk_event_result, timestamptz)
from public, anon, authenticated, service_role;

comment on function private.clerk_organization_deleted(public.clerk_event_result, timestamptz) is
'organization.deleted: revoke every seat of the organization (seats_revoked). '
'Called by apply_clerk_event only.';

create function private.clerk_user_updated(
    p_result public.clerk_event_result,
    p_data jsonb
)
returns public.clerk_event_result
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_result public.clerk_event_result := p_result;
begin
    v_result.extension_tokens_revoked := 0;
    v_result.refresh_tokens_revoked := 0;
    if p_data -> 'banned' = 'true'::jsonb or p_data -> 'locked' = 'true'::jsonb then
        select c.extension_tokens, c.refresh_tokens
        into v_result.extension_tokens_revoked, v_result.refresh_tokens_revoked
        from private.revoke_user_credentials(p_result.clerk_user_id) as c;
    end if;
    return v_result;
end
$$;

revoke all on function private.clerk_user_updated(public.clerk_event_result, jsonb)
from public, anon, authenticated, service_role;

comment on function private.clerk_user_updated(public.clerk_event_result, jsonb) is
'user.updated: with banned or locked true, revoke the user''s extension tokens and refresh-token '
'families (L3); otherwise nothing (0 and 0). Called by apply_clerk_event only.';

create function private.clerk_user_deleted(
    p_result public.clerk_event_result,
    p_event_at timestamptz
)
returns public.clerk_event_result
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_result public.clerk_event_result := p_result;
begin
    -- The row stays (the ledger points at it), marked deleted: a refresh or
    -- rotation for this user is refused from now on.
    insert into public.users as u (clerk_user_id)
    values (p_result.clerk_user_id)
    on conflict (clerk_user_id) do nothing;
    update public.users as u
    set deleted_at = coalesce(u.deleted_at, pg_catalog.now())
    where u.clerk_user_id = p_result.clerk_user_id
    returning u.id into v_result.user_id;
    update public.organization_seats as s
    set status = 'revoked',
        status_changed_at = coalesce(p_event_at, pg_catalog.now()),
        status_changed_by = 'clerk'
    where s.user_id = v_result.user_id and s.status <> 'revoked';
    get diagnostics v_result.seats_revoked = row_count;
    select c.extension_tokens, c.refresh_tokens
    into v_result.extension_tokens_revoked, v_result.refresh_tokens_revoked
    from private.revoke_user_credentials(p_result.clerk_user_id) as c;
    return v_result;
end
$$;

revoke all on function private.clerk_user_deleted(public.clerk_event_result, timestamptz)
from public, anon, authenticated, service_role;

comment on function private.clerk_user_deleted(public.clerk_event_result, timestamptz) is
'user.deleted: mark the user deleted, revoke every seat of the user (seats_revoked) and, in the same '
'transaction, every extension token and refresh-token family (L3). Called by apply_clerk_event only.';

create function private.clerk_membership_upserted(
    p_result public.clerk_event_result,
    p_data jsonb,
    p_event_at timestamptz
)
returns public.clerk_event_result
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_result public.clerk_event_result := p_result;
    v_created boolean := p_result.type = 'organizationMembership.created';
    v_org_name text;
    v_email text;
    v_clerk_role text;
    v_role text;
    v_seat public.organization_seats;
    v_status_reason text;
begin
    -- The organization and the user exist from here on.
    v_org_name := coalesce(
        nullif(pg_catalog.left(pg_catalog.btrim(p_data -> 'organization' ->> 'name'), 255), ''),
        p_result.clerk_org_id
    );
    insert into public.organizations as o (clerk_org_id, name)
    values (p_result.clerk_org_id, v_org_name)
    on conflict (clerk_org_id) do nothing
    returning o.id into v_result.organization_id;
    if v_result.organization_id is null then
        select o.id into v_result.organization_id
        from public.organizations as o
        where o.clerk_org_id = p_result.clerk_org_id;
    end if;

    v_email := p_data -> 'public_user_data' ->> 'identifier';
    if v_email is null or pg_catalog.strpos(v_email, '@') = 0 or pg_catalog.char_length(v_email) > 320 then
        v_email := null;
    end if;
    insert into public.users as u (clerk_user_id, email)
    values (p_result.clerk_user_id, v_email)
    on conflict (clerk_user_id) do update
        set email = excluded.email
        where u.email is null and excluded.email is not null
    returning u.id into v_result.user_id;
    if v_result.user_id is null then
        select u.id into v_result.user_id
        from public.users as u
        where u.clerk_user_id = p_result.clerk_user_id;
    end if;

    v_clerk_role := p_data ->> 'role';
    v_role := case
        when v_clerk_role in ('org:admin', 'admin')
            and p_result.clerk_user_id = p_data -> 'organization' ->> 'created_by' then 'owner'
        when v_clerk_role in ('org:admin', 'admin') then 'admin'
        else 'member'
    end;

    -- The seat as it is now (locked), to decide whether this event may move
    -- its status (hold, ordering).
    select s.* into v_seat
    from public.organization_seats as s
    where s.organization_id = v_result.organization_id and s.user_id = v_result.user_id
    for update;
    if found then
        v_status_reason := private.seat_status_kept(v_seat, p_event_at);
    end if;

    -- .created activates the seat (unless kept); .updated moves only the role.
    insert into public.organization_seats as s (
        organization_id, user_id, role, status, status_changed_at, status_changed_by
    )
    values (
        v_result.organization_id, v_result.user_id, v_role, 'active',
        coalesce(p_event_at, pg_catalog.now()), 'clerk'
    )
    on conflict (organization_id, user_id) do update
        set
            role = case
                when excluded.role = 'admin' and s.role = 'owner' then s.role
                else excluded.role
            end,
            status = case
                when not v_created or v_status_reason is not null or s.status = 'active' then s.status
                else 'active'
            end,
            status_changed_at = case
                when not v_created or v_status_reason is not null or s.status = 'active' then s.status_changed_at
                else excluded.status_changed_at
            end,
            status_changed_by = case
                when not v_created or v_status_reason is not null or s.status = 'active' then s.status_changed_by
                else 'clerk'
            end
    returning s.id, s.role, s.status
    into v_result.seat_id, v_result.seat_role, v_result.seat_status;

    if v_created then
        v_result.seat_status_kept := v_status_reason;
    end if;
    return v_result;
end
$$;

revoke all on function private.clerk_membership_upserted(public.clerk_event_result, jsonb, timestamptz)
from public, anon, authenticated, service_role;

comment on function private.clerk_membership_upserted(public.clerk_event_result, jsonb, timestamptz) is
'organizationMembership.created and .updated: upsert the organization, the user (email from '
'public_user_data.identifier when it is an address, never overwriting one) and the seat. The role '
'follows Clerk (owner kept while Clerk says admin); .created makes the seat active unless '
'private.seat_status_kept says why not (seat_status_kept). Called by apply_clerk_event only.';

create function private.clerk_membership_deleted(
    p_result public.clerk_event_result,
    p_event_at timestamptz
)
returns public.clerk_event_result
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_result public.clerk_event_result := p_result;
    v_seat public.organization_seats;
begin
    select s.* into v_seat
    from public.organization_seats as s
    inner join public.organizations as o on s.organization_id = o.id
    inner join public.users as u on s.user_id = u.id
    where o.clerk_org_id = p_result.clerk_org_id and u.clerk_user_id = p_result.clerk_user_id
    for update of s;
    v_result.seat_status_kept := private.seat_status_kept(v_seat, p_event_at);
    if v_seat.id is not null and v_result.seat_status_kept is null and v_seat.status <> 'revoked' then
        update public.organization_seats as s
        set status = 'revoked',
            status_changed_at = coalesce(p_event_at, pg_catalog.now()),
            status_changed_by = 'clerk'
        where s.id = v_seat.id
        returning s.* into v_seat;
    end if;
    v_result.organization_id := v_seat.organization_id;
    v_result.user_id := v_seat.user_id;
    v_result.seat_id := v_seat.id;
    v_result.seat_role := v_seat.role;
    v_result.seat_status := v_seat.status;
    return v_result;
end
$$;

revoke all on function private.clerk_membership_deleted(public.clerk_event_result, timestamptz)
from public, anon, authenticated, service_role;

comment on function private.clerk_membership_deleted(public.clerk_event_result, timestamptz) is
'organizationMembership.deleted: revoke the seat unless private.seat_status_kept says why not (a '
'held seat stays held). Called by apply_clerk_event only.';

-- apply_clerk_event: the dispatcher ---------------------------------------------------

create function public.apply_clerk_event(p_svix_id text, p_event jsonb)
returns public.clerk_event_result
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    v_type text;
    v_data jsonb;
    v_timestamp jsonb;
    v_event_at timestamptz;
    v_subject private.clerk_subject;
    v_result public.clerk_event_result;
    v_latest timestamptz;
begin
    -- Input ------------------------------------------------------------------
    if p_svix_id is null or pg_catalog.btrim(p_svix_id) = '' or pg_catalog.char_length(p_svix_id) > 255 then
        raise exception 'p_svix_id is required (at most 255 characters)' using errcode = '22023';
    end if;
    if p_event is null or pg_catalog.jsonb_typeof(p_event) <> 'object' then
        raise exception 'p_event must be a JSON object' using errcode = '22023';
    end if;
    v_type := p_event ->> 'type';
    if v_type is null or v_type = '' or pg_catalog.char_length(v_type) > 255 then
        raise exception 'p_event.type is required' using errcode = '22023';
    end if;
    v_data := p_event -> 'data';
    if pg_catalog.jsonb_typeof(v_data) is distinct from 'object' then
        raise exception 'p_event.data must be a JSON object' using errcode = '22023';
    end if;

    -- Clerk's time of the event, in milliseconds since the epoch.
    v_timestamp := coalesce(p_event -> 'timestamp', v_data -> 'updated_at');
    if pg_catalog.jsonb_typeof(v_timestamp) = 'number' then
        v_event_at := pg_catalog.to_timestamp((v_timestamp::numeric / 1000)::double precision);
    end if;

    v_subject := private.clerk_event_subject(v_type, v_data);
    v_result.svix_id := p_svix_id;
    v_result.type := v_type;
    v_result.clerk_org_id := v_subject.clerk_org_id;
    v_result.clerk_user_id := v_subject.clerk_user_id;
    v_result.applied := true;
    v_result.duplicate := false;
    v_result.outcome := 'applied';

    -- Locks on the subject: always org, then user, then seat. A seat event
    -- shares its organization's and user's locks, which their own events
    -- take exclusively.
    if v_subject.object_key like 'seat:%' then
        perform pg_catalog.pg_advisory_xact_lock_shared(
            pg_catalog.hashtextextended('clerk:org:' || v_subject.clerk_org_id, 0)
        );
        perform pg_catalog.pg_advisory_xact_lock_shared(
            pg_catalog.hashtextextended('clerk:user:' || v_subject.clerk_user_id, 0)
        );
    end if;
    if v_subject.object_key is not null then
        perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('clerk:' || v_subject.object_key, 0));
    end if;

    -- Unhandled type; ordering: older than what was applied about the same
    -- object -> stale; a deleted organization or user gets no new or changed
    -- seats.
    if v_subject.object_key is null then
        v_result.outcome := 'ignored';
        v_result.reason := 'unhandled_type';
    else
        select max(e.event_at) into v_latest
        from public.clerk_webhook_events as e
        where e.object_key = v_subject.object_key and e.outcome = 'applied';
        if v_event_at < v_latest then
            v_result.outcome := 'stale';
            v_result.reason := 'older_than_applied_event';
        end if;
    end if;
    if v_result.outcome = 'applied' and v_type in (
        'organization.created', 'organization.updated',
        'organizationMembership.created', 'organizationMembership.updated'
    ) then
        if exists (
            select 1
            from public.clerk_webhook_events as e
            where
                e.object_key = 'org:' || v_subject.clerk_org_id
                and e.outcome = 'applied'
                and e.type = 'organization.deleted'
        ) then
            v_result.outcome := 'ignored';
            v_result.reason := 'organization_deleted';
        elsif v_subject.clerk_user_id is not null and exists (
            select 1
            from public.clerk_webhook_events as e
            where
                e.object_key = 'user:' || v_subject.clerk_user_id
                and e.outcome = 'applied'
                and e.type = 'user.deleted'
        ) then
            v_result.outcome := 'ignored';
            v_result.reason := 'user_deleted';
        end if;
    end if;
    v_result.applied := v_result.outcome = 'applied';

    -- Deduplication: the first delivery of a svix-id wins; a concurrent
    -- repeat waits here for it to commit and then finds the row.
    insert into public.clerk_webhook_events as e (
        svix_id, type, clerk_object_id, object_key, event_at, outcome
    )
    values (
        p_svix_id, v_type, pg_catalog.left(v_data ->> 'id', 255), v_subject.object_key, v_event_at,
        v_result.outcome
    )
    on conflict (svix_id) do nothing;
    if not found then
        v_result.applied := false;
        v_result.duplicate := true;
        v_result.outcome := 'duplicate';
        v_result.reason := null;
        return v_result;
    end if;
    if not v_result.applied then
        return v_result;
    end if;

    -- One function per event type.
    return case v_type
        when 'organization.created' then private.clerk_organization_upserted(v_result, v_data)
        when 'organization.updated' then private.clerk_organization_upserted(v_result, v_data)
        when 'organization.deleted' then private.clerk_organization_deleted(v_result, v_event_at)
        when 'organizationMembership.created' then private.clerk_membership_upserted(v_result, v_data, v_event_at)
        when 'organizationMembership.updated' then private.clerk_membership_upserted(v_result, v_data, v_event_at)
        when 'organizationMembership.deleted' then private.clerk_membership_deleted(v_result, v_event_at)
        when 'user.updated' then private.clerk_user_updated(v_result, v_data)
        when 'user.deleted' then private.clerk_user_deleted(v_result, v_event_at)
    end;
end
$$;

revoke all on function public.apply_clerk_event(text, jsonb)
from public, anon, authenticated, service_role;
grant execute on function public.apply_clerk_event(text, jsonb) to service_role;

comment on function public.apply_clerk_event(text, jsonb) is
'Apply one Clerk webhook event (the verified body) delivered with svix-id p_svix_id. The dispatcher: '
'deduplicates by svix-id (outcome duplicate); records events older than one already applied about the '
'same organization, user or seat as stale; ignores unhandled types and events for a deleted '
'organization or user; else calls the private function of the event type (private.clerk_organization_'
'upserted / _deleted, private.clerk_membership_upserted / _deleted, private.clerk_user_updated / '
'_deleted). Returns public.clerk_event_result. Malformed event: SQLSTATE 22023 (nothing recorded). '
'service_role only (the clerk-webhooks edge function).';
