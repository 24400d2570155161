"""The development harness: what a checkout needs and a deployment does not.

A local Postgres (``localdb``), the migration runner (``migrations``), the fake
Clerk (``fake_clerk``), a served issuer for tests (``served``), the demo
(``demo``) and the ``issuer db`` / ``issuer demo`` verbs (``cli_db``,
``cli_demo``). The runtime wheel leaves this package out (pyproject.toml);
``make setup`` puts ``py/`` on the dev venv's path, and ``issuer`` adds the
two verbs when this package can be imported. Nothing here is active unless a
caller configures it.
"""
