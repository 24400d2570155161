-- Per-seat caps inside an org pool (issue 20 item 2).
--
-- STAND-IN on branch i20holds: the holds (20260114000000_credit_holds) call
-- these two functions, which branch i20caps defines in this same file with
-- the real caps. On merge, i20caps's file wins; keep these signatures.
--   seat_cap_take       true: the amount was counted against the seat's cap
--                       (here: always; no caps exist on this branch)
--   seat_cap_give_back  returns an amount to the period it was taken in
--                       (here: nothing to return)

create function private.seat_cap_take(p_seat_id uuid, p_amount numeric)
returns boolean
language plpgsql
volatile
set search_path = ''
as $$
begin
    return p_seat_id is not null or p_amount is not null or true;
end
$$;

revoke all on function private.seat_cap_take(uuid, numeric)
from public, anon, authenticated, service_role;

comment on function private.seat_cap_take(uuid, numeric) is
'Stand-in (branch i20holds): no caps, every amount may be taken.';

create function private.seat_cap_give_back(
    p_seat_id uuid,
    p_amount numeric,
    p_taken_at timestamptz
)
returns void
language plpgsql
volatile
set search_path = ''
as $$
begin
    perform p_seat_id, p_amount, p_taken_at;
end
$$;

revoke all on function private.seat_cap_give_back(uuid, numeric, timestamptz)
from public, anon, authenticated, service_role;

comment on function private.seat_cap_give_back(uuid, numeric, timestamptz) is
'Stand-in (branch i20holds): no caps, nothing to give back.';
