-- Clerk webhook sync: Clerk's organization and membership events keep
-- organizations, users and seats true.
--
-- The clerk-webhooks edge function verifies the Svix signature over the raw
-- body and hands each event, with its svix-id, to apply_clerk_event (service
-- role only). Every rule lives here:
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

create function private.revoke_user_credentials(p_clerk_user_id text)
returns jsonb
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_family uuid;
    v_extension integer;
    v_refresh integer;
begin
    update public.extension_tokens as t
    set revoked_at = pg_catalog.now()
    where t.clerk_user_id = p_clerk_user_id and t.revoked_at is null;
    get diagnostics v_extension = row_count;

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
    get diagnostics v_refresh = row_count;

    return pg_catalog.jsonb_build_object('extension_tokens', v_extension, 'refresh_tokens', v_refresh);
end
$$;

revoke all on function private.revoke_user_credentials(text)
from public, anon, authenticated, service_role;

comment on function private.revoke_user_credentials(text) is
'Revokes every live extension token and refresh token of the user (L3: user.deleted, banned, '
'locked). Returns the counts {extension_tokens, refresh_tokens}.';

-- apply_clerk_event ----------------------------------------------------------

create function public.apply_clerk_event(p_svix_id text, p_event jsonb)
returns jsonb
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
    v_object_id text;
    v_object_key text;
    v_clerk_org_id text;
    v_clerk_user_id text;
    v_org_name text;
    v_email text;
    v_clerk_role text;
    v_role text;
    v_outcome text := 'applied';
    v_reason text;
    v_latest timestamptz;
    v_org_id uuid;
    v_user_id uuid;
    v_seat public.organization_seats;
    v_revoked integer;
    v_status_reason text;
    v_credentials jsonb;
    v_result jsonb;
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
    v_object_id := pg_catalog.left(v_data ->> 'id', 255);

    -- Clerk's time of the event, in milliseconds since the epoch.
    v_timestamp := coalesce(p_event -> 'timestamp', v_data -> 'updated_at');
    if pg_catalog.jsonb_typeof(v_timestamp) = 'number' then
        v_event_at := pg_catalog.to_timestamp((v_timestamp::numeric / 1000)::double precision);
    end if;

    -- What the event is about, and its locks (always org, then user, then seat).
    if v_type in ('organization.created', 'organization.updated', 'organization.deleted') then
        v_clerk_org_id := v_data ->> 'id';
        if v_clerk_org_id is null or v_clerk_org_id = '' then
            raise exception 'p_event.data.id (the organization id) is required' using errcode = '22023';
        end if;
        v_object_key := 'org:' || v_clerk_org_id;
        perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('clerk:' || v_object_key, 0));
    elsif v_type in ('user.deleted', 'user.updated') then
        v_clerk_user_id := v_data ->> 'id';
        if v_clerk_user_id is null or v_clerk_user_id = '' then
            raise exception 'p_event.data.id (the user id) is required' using errcode = '22023';
        end if;
        v_object_key := 'user:' || v_clerk_user_id;
        perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('clerk:' || v_object_key, 0));
    elsif v_type in (
        'organizationMembership.created', 'organizationMembership.updated', 'organizationMembership.deleted'
    ) then
        v_clerk_org_id := v_data -> 'organization' ->> 'id';
        v_clerk_user_id := v_data -> 'public_user_data' ->> 'user_id';
        if v_clerk_org_id is null or v_clerk_org_id = '' then
            raise exception 'p_event.data.organization.id is required' using errcode = '22023';
        end if;
        if v_clerk_user_id is null or v_clerk_user_id = '' then
            raise exception 'p_event.data.public_user_data.user_id is required' using errcode = '22023';
        end if;
        v_object_key := 'seat:' || v_clerk_org_id || ':' || v_clerk_user_id;
        perform pg_catalog.pg_advisory_xact_lock_shared(
            pg_catalog.hashtextextended('clerk:org:' || v_clerk_org_id, 0)
        );
        perform pg_catalog.pg_advisory_xact_lock_shared(
            pg_catalog.hashtextextended('clerk:user:' || v_clerk_user_id, 0)
        );
        perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('clerk:' || v_object_key, 0));
    else
        v_outcome := 'ignored';
        v_reason := 'unhandled_type';
    end if;

    -- Ordering: older than what was applied about the same object -> stale.
    if v_object_key is not null then
        select max(e.event_at) into v_latest
        from public.clerk_webhook_events as e
        where e.object_key = v_object_key and e.outcome = 'applied';
        if v_event_at < v_latest then
            v_outcome := 'stale';
            v_reason := 'older_than_applied_event';
        end if;
    end if;

    -- A deleted organization or user gets no new or changed seats.
    if v_outcome = 'applied' and v_type in (
        'organization.created', 'organization.updated',
        'organizationMembership.created', 'organizationMembership.updated'
    ) then
        if exists (
            select 1
            from public.clerk_webhook_events as e
            where
                e.object_key = 'org:' || v_clerk_org_id
                and e.outcome = 'applied'
                and e.type = 'organization.deleted'
        ) then
            v_outcome := 'ignored';
            v_reason := 'organization_deleted';
        elsif v_clerk_user_id is not null and exists (
            select 1
            from public.clerk_webhook_events as e
            where
                e.object_key = 'user:' || v_clerk_user_id
                and e.outcome = 'applied'
                and e.type = 'user.deleted'
        ) then
            v_outcome := 'ignored';
            v_reason := 'user_deleted';
        end if;
    end if;

    -- Deduplication: the first delivery of a svix-id wins; a concurrent
    -- repeat waits here for it to commit and then finds the row.
    insert into public.clerk_webhook_events as e (
        svix_id, type, clerk_object_id, object_key, event_at, outcome
    )
    values (p_svix_id, v_type, v_object_id, v_object_key, v_event_at, v_outcome)
    on conflict (svix_id) do nothing;
    if not found then
        return pg_catalog.jsonb_build_object(
            'applied', false, 'duplicate', true, 'outcome', 'duplicate',
            'svix_id', p_svix_id, 'type', v_type
        );
    end if;

    v_result := pg_catalog.jsonb_build_object(
        'applied', v_outcome = 'applied',
        'duplicate', false,
        'outcome', v_outcome,
        'reason', v_reason,
        'svix_id', p_svix_id,
        'type', v_type
    );
    if v_outcome <> 'applied' then
        return v_result;
    end if;

    -- Organizations ------------------------------------------------------------
    if v_type in ('organization.created', 'organization.updated') then
        v_org_name := pg_catalog.left(pg_catalog.btrim(v_data ->> 'name'), 255);
        if v_org_name is null or v_org_name = '' then
            raise exception 'p_event.data.name is required' using errcode = '22023';
        end if;
        insert into public.organizations as o (clerk_org_id, name)
        values (v_clerk_org_id, v_org_name)
        on conflict (clerk_org_id) do update
            set name = excluded.name
        returning o.id into v_org_id;
        return v_result || pg_catalog.jsonb_build_object(
            'clerk_org_id', v_clerk_org_id, 'organization_id', v_org_id
        );
    end if;

    if v_type = 'organization.deleted' then
        select o.id into v_org_id
        from public.organizations as o
        where o.clerk_org_id = v_clerk_org_id;
        update public.organization_seats as s
        set status = 'revoked',
            status_changed_at = coalesce(v_event_at, pg_catalog.now()),
            status_changed_by = 'clerk'
        where s.organization_id = v_org_id and s.status <> 'revoked';
        get diagnostics v_revoked = row_count;
        return v_result || pg_catalog.jsonb_build_object(
            'clerk_org_id', v_clerk_org_id, 'organization_id', v_org_id, 'seats_revoked', v_revoked
        );
    end if;

    -- Users ----------------------------------------------------------------------
    if v_type = 'user.updated' then
        if v_data -> 'banned' = 'true'::jsonb or v_data -> 'locked' = 'true'::jsonb then
            v_credentials := private.revoke_user_credentials(v_clerk_user_id);
        end if;
        return v_result || pg_catalog.jsonb_build_object(
            'clerk_user_id', v_clerk_user_id,
            'credentials_revoked', coalesce(v_credentials, '{"extension_tokens": 0, "refresh_tokens": 0}'::jsonb)
        );
    end if;

    if v_type = 'user.deleted' then
        -- The row stays (the ledger points at it), marked deleted: a refresh
        -- or rotation for this user is refused from now on.
        insert into public.users as u (clerk_user_id)
        values (v_clerk_user_id)
        on conflict (clerk_user_id) do nothing;
        update public.users as u
        set deleted_at = coalesce(u.deleted_at, pg_catalog.now())
        where u.clerk_user_id = v_clerk_user_id
        returning u.id into v_user_id;
        update public.organization_seats as s
        set status = 'revoked',
            status_changed_at = coalesce(v_event_at, pg_catalog.now()),
            status_changed_by = 'clerk'
        where s.user_id = v_user_id and s.status <> 'revoked';
        get diagnostics v_revoked = row_count;
        v_credentials := private.revoke_user_credentials(v_clerk_user_id);
        return v_result || pg_catalog.jsonb_build_object(
            'clerk_user_id', v_clerk_user_id, 'user_id', v_user_id, 'seats_revoked', v_revoked,
            'credentials_revoked', v_credentials
        );
    end if;

    -- Memberships -> seats -------------------------------------------------------
    v_result := v_result || pg_catalog.jsonb_build_object(
        'clerk_org_id', v_clerk_org_id, 'clerk_user_id', v_clerk_user_id
    );

    if v_type = 'organizationMembership.deleted' then
        select s.* into v_seat
        from public.organization_seats as s
        inner join public.organizations as o on s.organization_id = o.id
        inner join public.users as u on s.user_id = u.id
        where o.clerk_org_id = v_clerk_org_id and u.clerk_user_id = v_clerk_user_id
        for update of s;
        v_status_reason := private.seat_status_kept(v_seat, v_event_at);
        if v_seat.id is not null and v_status_reason is null and v_seat.status <> 'revoked' then
            update public.organization_seats as s
            set status = 'revoked',
                status_changed_at = coalesce(v_event_at, pg_catalog.now()),
                status_changed_by = 'clerk'
            where s.id = v_seat.id
            returning s.* into v_seat;
        end if;
        return v_result || pg_catalog.jsonb_build_object(
            'organization_id', v_seat.organization_id,
            'seat_id', v_seat.id,
            'seat_role', v_seat.role,
            'seat_status', v_seat.status,
            'seat_status_kept', v_status_reason
        );
    end if;

    -- created / updated: the organization and the user exist from here on.
    v_org_name := coalesce(
        nullif(pg_catalog.left(pg_catalog.btrim(v_data -> 'organization' ->> 'name'), 255), ''),
        v_clerk_org_id
    );
    insert into public.organizations as o (clerk_org_id, name)
    values (v_clerk_org_id, v_org_name)
    on conflict (clerk_org_id) do nothing
    returning o.id into v_org_id;
    if v_org_id is null then
        select o.id into v_org_id
        from public.organizations as o
        where o.clerk_org_id = v_clerk_org_id;
    end if;

    v_email := v_data -> 'public_user_data' ->> 'identifier';
    if v_email is null or pg_catalog.strpos(v_email, '@') = 0 or pg_catalog.char_length(v_email) > 320 then
        v_email := null;
    end if;
    insert into public.users as u (clerk_user_id, email)
    values (v_clerk_user_id, v_email)
    on conflict (clerk_user_id) do update
        set email = excluded.email
        where u.email is null and excluded.email is not null
    returning u.id into v_user_id;
    if v_user_id is null then
        select u.id into v_user_id
        from public.users as u
        where u.clerk_user_id = v_clerk_user_id;
    end if;

    v_clerk_role := v_data ->> 'role';
    v_role := case
        when v_clerk_role in ('org:admin', 'admin')
            and v_clerk_user_id = v_data -> 'organization' ->> 'created_by' then 'owner'
        when v_clerk_role in ('org:admin', 'admin') then 'admin'
        else 'member'
    end;

    -- The seat as it is now (locked), to decide whether this event may move
    -- its status (hold, ordering).
    select s.* into v_seat
    from public.organization_seats as s
    where s.organization_id = v_org_id and s.user_id = v_user_id
    for update;
    if found then
        v_status_reason := private.seat_status_kept(v_seat, v_event_at);
    end if;

    insert into public.organization_seats as s (
        organization_id, user_id, role, status, status_changed_at, status_changed_by
    )
    values (v_org_id, v_user_id, v_role, 'active', coalesce(v_event_at, pg_catalog.now()), 'clerk')
    on conflict (organization_id, user_id) do update
        set
            role = case
                when excluded.role = 'admin' and s.role = 'owner' then s.role
                else excluded.role
            end,
            status = case
                when v_type = 'organizationMembership.updated' or v_status_reason is not null
                    or s.status = 'active' then s.status
                else 'active'
            end,
            status_changed_at = case
                when v_type = 'organizationMembership.updated' or v_status_reason is not null
                    or s.status = 'active' then s.status_changed_at
                else excluded.status_changed_at
            end,
            status_changed_by = case
                when v_type = 'organizationMembership.updated' or v_status_reason is not null
                    or s.status = 'active' then s.status_changed_by
                else 'clerk'
            end
    returning s.* into v_seat;

    return v_result || pg_catalog.jsonb_build_object(
        'organization_id', v_org_id,
        'user_id', v_user_id,
        'seat_id', v_seat.id,
        'seat_role', v_seat.role,
        'seat_status', v_seat.status,
        'seat_status_kept', case when v_type = 'organizationMembership.created' then v_status_reason end
    );
end
$$;

revoke all on function public.apply_clerk_event(text, jsonb)
from public, anon, authenticated, service_role;
grant execute on function public.apply_clerk_event(text, jsonb) to service_role;

comment on function public.apply_clerk_event(text, jsonb) is
'Apply one Clerk webhook event (the verified body) delivered with svix-id p_svix_id. '
'Deduplicates by svix-id ({applied: false, duplicate: true}); records events older than one '
'already applied about the same organization, user or seat as stale; ignores unhandled types. '
'organization.created/updated upsert the organization; organization.deleted and user.deleted '
'revoke all their seats; organizationMembership.created upserts user and seat (active), .updated '
'sets the seat role (org:admin -> admin, else member; the creator -> owner), .deleted revokes the '
'seat. Returns {applied, duplicate, outcome, reason, svix_id, type, ...ids, seat_status}. '
'Malformed event: SQLSTATE 22023. service_role only (the clerk-webhooks edge function).';
