-- The alert deliverer is not a way into the network (issue 28, SECURITY.md H6).
--
-- private.public_address(inet)         true for a globally routable unicast address
-- private.webhook_url_refusal(text)    null for a webhook URL we may POST to, else why not
-- private.store_low_balance_webhook    refuses such URLs at store time (22023)
-- low_balance_alerts.last_outcome      what an admin reads: a category, never remote text
-- public.finish_low_balance_alert      the deliverer's report, bound to its attempt
-- public.complete_low_balance_alert    kept for old deliverers: maps text to a category
--
-- The store-time rule is the first of two: the edge function resolves the name at
-- delivery time and refuses it when any address is not public (a name can point
-- anywhere; see supabase/functions/low-balance-alerts/address_policy.ts). Rows stored
-- before this migration are not rewritten: the deliverer refuses them as
-- refused_address, which their admins see.
--
-- The rules (docs/security-model.md H6):
--   * https only: no deployer flag allows http (a test that needs a local http
--     receiver writes the row directly as the superuser);
--   * no userinfo, no backslash, no percent-encoding or non-ASCII in the host (a
--     WHATWG URL parser decodes and maps those, so the host we check could differ
--     from the host fetch connects to);
--   * an IP literal must be canonical (a.b.c.d or [v6]): WHATWG reads 127.1, 0,
--     2130706433, 0x7f.1 and 0177.0.0.1 as IPv4; we refuse every non-canonical form
--     rather than re-implement that parser, then refuse non-public ranges;
--   * names: at least two labels (localhost, metadata, intranet...), not under
--     localhost, local, internal, localdomain, lan, home, corp, arpa, and not a
--     known metadata name.

-- Addresses ----------------------------------------------------------------------

create function private.public_address(p_address inet)
returns boolean
language sql
immutable
set search_path = ''
as $$
    select case pg_catalog.family(p_address)
        when 4 then not p_address <<= any(array[
            '0.0.0.0/8',        -- "this network", 0 and 0.0.0.0
            '10.0.0.0/8',       -- private
            '100.64.0.0/10',    -- CGNAT (and Alibaba's metadata 100.100.100.200)
            '127.0.0.0/8',      -- loopback
            '169.254.0.0/16',   -- link-local (cloud metadata 169.254.169.254)
            '172.16.0.0/12',    -- private
            '192.0.0.0/24',     -- IETF protocol assignments
            '192.0.2.0/24',     -- documentation
            '192.88.99.0/24',   -- 6to4 relay anycast
            '192.168.0.0/16',   -- private
            '198.18.0.0/15',    -- benchmarking
            '198.51.100.0/24',  -- documentation
            '203.0.113.0/24',   -- documentation
            '224.0.0.0/4',      -- multicast
            '240.0.0.0/4'       -- reserved, broadcast
        ]::inet [])
        -- IPv6: global unicast only (2000::/3), which leaves out ::, ::1,
        -- IPv4-mapped ::ffff:0:0/96, NAT64 64:ff9b::/96, unique-local fc00::/7,
        -- link-local fe80::/10, site-local fec0::/10 and multicast ff00::/8.
        else p_address <<= '2000::/3'::inet and not p_address <<= any(array[
            '2001::/23',        -- IETF protocol assignments (Teredo 2001::/32 included)
            '2001:db8::/32',    -- documentation
            '2002::/16',        -- 6to4: embeds any IPv4 address
            '3fff::/20'         -- documentation
        ]::inet [])
    end
$$;

revoke all on function private.public_address(inet) from public, anon, authenticated, service_role;

comment on function private.public_address(inet) is
'True for a globally routable unicast address: not loopback, private, CGNAT, link-local, '
'unique-local, multicast, unspecified, documentation, IPv4-mapped or 6to4 (H6).';

-- URLs -----------------------------------------------------------------------------

create function private.webhook_url_refusal(p_url text)
returns text
language plpgsql
immutable
set search_path = ''
as $$
declare
    v_parts text[];
    v_host_port text[];
    v_host text;
    v_labels text[];
    v_last text;
    v_address inet;
begin
    if p_url is null then
        return null;
    elsif pg_catalog.length(p_url) > 2000 or p_url !~ '^[!-~]+$' or pg_catalog.strpos(p_url, '\') > 0 then
        -- printable ASCII only: no space, control character, backslash or non-ASCII
        return 'bad_syntax';
    end if;
    v_parts := pg_catalog.regexp_match(p_url, '^([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)([/?#].*)?$');
    if v_parts is null then
        return 'bad_syntax';
    elsif pg_catalog.lower(v_parts[1]) <> 'https' then
        return 'not_https';
    elsif pg_catalog.strpos(v_parts[2], '@') > 0 then
        return 'userinfo';
    end if;
    v_host_port := pg_catalog.regexp_match(
        v_parts[2], '^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:([0-9]{1,5}))?$'
    );
    if v_host_port is null or (v_host_port[3] is not null and v_host_port[3]::int not between 1 and 65535) then
        return 'bad_syntax';
    end if;
    v_host := pg_catalog.lower(v_host_port[1]);

    if pg_catalog.left(v_host, 1) = '[' then
        begin
            v_address := pg_catalog.btrim(v_host, '[]')::inet;
        exception when invalid_text_representation then
            return 'bad_syntax';
        end;
        return case when private.public_address(v_address) then null else 'non_public_address' end;
    end if;

    v_host := pg_catalog.rtrim(v_host, '.');  -- "localhost." is localhost
    v_labels := pg_catalog.string_to_array(v_host, '.');
    if
        v_host = '' or pg_catalog.length(v_host) > 253
        or exists (
            select from pg_catalog.unnest(v_labels) as l (label)
            where l.label = '' or pg_catalog.length(l.label) > 63
        )
    then
        return 'bad_syntax';
    end if;
    v_last := v_labels[pg_catalog.cardinality(v_labels)];

    -- A last label that is a number makes the host an IPv4 literal (WHATWG).
    if v_last ~ '^[0-9]+$' or v_last ~ '^0x[0-9a-f]*$' then
        if v_host !~ '^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$'
            then
            return 'non_canonical_address';
        end if;
        return case when private.public_address(v_host::inet) then null else 'non_public_address' end;
    end if;

    if
        pg_catalog.cardinality(v_labels) < 2
        or v_last in ('localhost', 'local', 'internal', 'localdomain', 'lan', 'home', 'corp', 'arpa')
        or v_host in ('metadata.goog', 'metadata.tencentyun.com', 'metadata.platformequinix.com')
    then
        return 'internal_name';
    end if;
    return null;
end
$$;

revoke all on function private.webhook_url_refusal(text) from public, anon, authenticated, service_role;

comment on function private.webhook_url_refusal(text) is
'null when p_url may be an alert webhook (https, a public host, no userinfo), else the reason: '
'bad_syntax, not_https, userinfo, non_canonical_address, non_public_address, internal_name (H6). '
'The deliverer re-checks every resolved address at delivery time.';

create or replace function private.store_low_balance_webhook(
    p_actor text,
    p_organization_id uuid,
    p_url text
)
returns public.low_balance_alert_settings
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_reason text;
    v_refusal text := private.webhook_url_refusal(p_url);
begin
    if p_organization_id is null then
        raise exception 'p_organization_id must not be null' using errcode = '22023';
    elsif v_refusal is not null then
        raise exception 'p_url must be an https URL of a public host (refused: %)', v_refusal
            using errcode = '22023';
    end if;

    v_reason := private.may_administer_org(p_actor, p_organization_id);
    if v_reason is not null then
        return row(
            false, v_reason, p_organization_id, null, null, null, null
        )::public.low_balance_alert_settings;
    end if;

    if p_url is null then
        delete from public.organization_alert_webhooks as w
        where w.organization_id = p_organization_id;
    else
        insert into public.organization_alert_webhooks (organization_id, url)
        values (p_organization_id, p_url)
        on conflict (organization_id) do update
            set url = excluded.url, updated_at = pg_catalog.now();
    end if;
    return private.low_balance_alert_settings(p_organization_id);
end
$$;

comment on function public.set_low_balance_webhook(uuid, text) is
'Set (null: remove) the URL the org''s low-balance alerts are POSTed to. Same callers and '
'refusals as set_low_balance_thresholds; p_url not an https URL of a public host (no userinfo, '
'no loopback/private/link-local/metadata address or name): 22023 (H3, H6).';

-- Outcomes -------------------------------------------------------------------------

-- Remote text never reaches an admin: an outcome is one of these words.
create function private.alert_outcome_of(p_error text)
returns text
language sql
immutable
set search_path = ''
as $$
    select case
        when p_error is null then null
        when p_error in (
            'delivered', 'unreachable', 'refused_address', 'http_3xx', 'http_4xx', 'http_5xx', 'timeout'
        ) then p_error
        when p_error ~ '^HTTP 3[0-9][0-9]' then 'http_3xx'
        when p_error ~ '^HTTP 4[0-9][0-9]' then 'http_4xx'
        when p_error ~ '^HTTP 5[0-9][0-9]' then 'http_5xx'
        when p_error ~* 'timeout|timed out' then 'timeout'
        else 'unreachable'
    end
$$;

revoke all on function private.alert_outcome_of(text) from public, anon, authenticated, service_role;

comment on function private.alert_outcome_of(text) is
'The outcome category of a delivery report: a category is kept, an old deliverer''s text '
'("HTTP 503", "TypeError: fetch failed") is mapped to one (H6).';

alter table public.low_balance_alerts
add column last_outcome text;

update public.low_balance_alerts
set
    last_outcome = case when delivered_at is not null then 'delivered' else private.alert_outcome_of(last_error) end,
    last_error = case when delivered_at is null then private.alert_outcome_of(last_error) end
where last_error is not null or delivered_at is not null;

alter table public.low_balance_alerts
add constraint low_balance_alerts_last_outcome_category check (
    last_outcome in (
        'delivered', 'unreachable', 'refused_address', 'http_3xx', 'http_4xx', 'http_5xx', 'timeout'
    )
),
add constraint low_balance_alerts_last_error_category check (
    last_error in ('unreachable', 'refused_address', 'http_3xx', 'http_4xx', 'http_5xx', 'timeout')
);

comment on column public.low_balance_alerts.last_outcome is
'The last attempt''s outcome, what an admin reads (H6): delivered, unreachable, refused_address '
'(the URL or a resolved address is not public), http_3xx (never followed), http_4xx, http_5xx, '
'timeout. Never the remote''s text.';

comment on column public.low_balance_alerts.last_error is
'The last failed attempt''s outcome category (as last_outcome; null once delivered). Kept for '
'readers of H3; it no longer holds the remote''s text (H6).';

-- Reports --------------------------------------------------------------------------

create function public.finish_low_balance_alert(
    p_alert_id uuid,
    p_attempt int,
    p_outcome text
)
returns public.low_balance_alert_delivery
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    v_result public.low_balance_alert_delivery;
begin
    if p_alert_id is null or p_attempt is null then
        raise exception 'p_alert_id and p_attempt must not be null' using errcode = '22023';
    elsif p_outcome is null or p_outcome not in (
        'delivered', 'unreachable', 'refused_address', 'http_3xx', 'http_4xx', 'http_5xx', 'timeout'
    ) then
        raise exception
            'p_outcome must be delivered, unreachable, refused_address, http_3xx, http_4xx, http_5xx or timeout'
            using errcode = '22023';
    end if;

    if p_outcome = 'delivered' then
        -- Even from a superseded attempt: it was posted, so it is never posted again.
        update public.low_balance_alerts as a
        set delivered_at = coalesce(a.delivered_at, pg_catalog.now()),
            claimed_until = case when a.attempts = p_attempt then null else a.claimed_until end,
            last_outcome = 'delivered',
            last_error = null
        where a.id = p_alert_id
        returning a.id, true, false, a.attempts, a.next_attempt_at into v_result;
    else
        -- Only the current attempt reschedules: the failure report of an attempt
        -- whose lease ran out and that was claimed again must not release the
        -- newer claim (a third run would post it while the second still is).
        update public.low_balance_alerts as a
        set claimed_until = null,
            last_outcome = p_outcome,
            last_error = p_outcome,
            next_attempt_at = pg_catalog.now() + pg_catalog.make_interval(
                secs => least(3600, 5 * pg_catalog.power(2, greatest(a.attempts - 1, 0)))
            ),
            failed_at = case when a.attempts >= 10 then pg_catalog.now() end
        where a.id = p_alert_id and a.delivered_at is null and a.attempts = p_attempt
        returning a.id, false, a.failed_at is not null, a.attempts, a.next_attempt_at
        into v_result;
        if v_result.alert_id is null then
            select a.id, a.delivered_at is not null, a.failed_at is not null, a.attempts, a.next_attempt_at
            into v_result
            from public.low_balance_alerts as a
            where a.id = p_alert_id;
        end if;
    end if;

    if v_result.alert_id is null then
        raise exception 'no low-balance alert %', p_alert_id using errcode = 'P0002';
    end if;
    return v_result;
end
$$;

revoke all on function public.finish_low_balance_alert(uuid, int, text)
from public, anon, authenticated, service_role;
grant execute on function public.finish_low_balance_alert(uuid, int, text) to service_role;

comment on function public.finish_low_balance_alert(uuid, int, text) is
'Report attempt p_attempt (as claim_low_balance_alerts returned it) of an alert with its outcome '
'category: delivered (final), else retried with backoff (5 s doubling, at most 1 h; given up '
'after 10 attempts). A failure of an attempt that is no longer the current one changes nothing. '
'Service role only (H3, H6).';

create or replace function public.complete_low_balance_alert(p_alert_id uuid, p_error text default null)
returns public.low_balance_alert_delivery
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    v_attempt int;
begin
    if p_alert_id is null then
        raise exception 'p_alert_id must not be null' using errcode = '22023';
    end if;
    select a.attempts into v_attempt from public.low_balance_alerts as a where a.id = p_alert_id;
    if v_attempt is null then
        raise exception 'no low-balance alert %', p_alert_id using errcode = 'P0002';
    end if;
    return public.finish_low_balance_alert(
        p_alert_id, v_attempt, coalesce(private.alert_outcome_of(p_error), 'delivered')
    );
end
$$;

comment on function public.complete_low_balance_alert(uuid, text) is
'Superseded by finish_low_balance_alert (bound to the attempt). p_error null = delivered; '
'else mapped to an outcome category (HTTP 4xx -> http_4xx, other text -> unreachable): the '
'remote''s text is never stored (H6). Service role only (H3).';

comment on function public.claim_low_balance_alerts(int, int) is
'Claims up to p_limit due, undelivered alerts of orgs with a webhook (for update skip locked: '
'concurrent deliverers never get the same alert), leases them for p_lease_seconds and counts '
'the attempt. Returns the URL, the attempt number (report it to finish_low_balance_alert) and '
'the JSON body to POST. The deliverer bounds each POST to end before the lease does (H6). '
'Service role only (H3).';
