"""The token flows: pure orchestration of Clerk, the RPCs and the key ring.

* :mod:`.scope`: which pool a new token names (seat-gated org scope or personal).
* :mod:`.minting`: claims → signed token; opaque secrets and their hashes.
* :mod:`.extension_tokens`: long-lived extension tokens (generate, refresh, list, revoke).
* :mod:`.oauth`: the PKCE code flow, refresh grants, RFC 7009 revocation.
* :mod:`.bearer`: verifying the bearer tokens the API receives.
* :mod:`.usage`: the metered business endpoint's deduction.

HTTP handlers (``issuer.api``) are thin wrappers around these functions.
"""
