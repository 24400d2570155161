-- Low-balance alerts (issue 20 item 3).
--
-- STAND-IN on branch i20holds: capture_credits (20260114000000_credit_holds)
-- calls note_pool_debit after each org capture; branch i20caps defines it in
-- this same file with the real alerts. On merge, i20caps's file wins; keep
-- this signature.

create function private.note_pool_debit(
    p_subscription_id uuid,
    p_balance_before numeric,
    p_balance_after numeric
)
returns void
language plpgsql
volatile
set search_path = ''
as $$
begin
    perform p_subscription_id, p_balance_before, p_balance_after;
end
$$;

revoke all on function private.note_pool_debit(uuid, numeric, numeric)
from public, anon, authenticated, service_role;

comment on function private.note_pool_debit(uuid, numeric, numeric) is
'Stand-in (branch i20holds): no alerts.';
