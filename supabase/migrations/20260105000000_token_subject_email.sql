-- The user's email for tokens (SECURITY.md L9), in the round trip that
-- resolves attribution.
--
-- Clerk's default session token carries no email, so a token minted from it
-- would say email: null although users.email is known. When the session has
-- no email the issuer calls resolve_token_subject instead of
-- resolve_org_attribution: the same attribution (resolve_org_attribution's
-- row, unchanged) and users.email, in one statement.

create type public.token_subject as (
    email text,
    attribution public.org_attribution
);

comment on type public.token_subject is
'What resolve_token_subject answers: users.email (null when unknown) and the '
'public.org_attribution row (null without an org or without an active seat).';

create function public.resolve_token_subject(p_clerk_user_id text, p_clerk_org_id text default null)
returns public.token_subject
language plpgsql
stable
security invoker
set search_path = ''
as $$
begin
    return row(
        (select u.email from public.users as u where u.clerk_user_id = p_clerk_user_id),
        case
            when p_clerk_org_id is not null
                then public.resolve_org_attribution(p_clerk_user_id, p_clerk_org_id)
        end
    )::public.token_subject;
end
$$;

revoke all on function public.resolve_token_subject(text, text)
from public, anon, authenticated, service_role;
grant execute on function public.resolve_token_subject(text, text) to service_role;

comment on function public.resolve_token_subject(text, text) is
'L9: (email, attribution) for token issuance in one call, a public.token_subject row: email is '
'users.email (null when unknown), attribution is resolve_org_attribution(p_clerk_user_id, '
'p_clerk_org_id) (null without p_clerk_org_id or without an active seat). Never null itself. '
'Service role only; security invoker.';
