"""docs/openapi.json is the served OpenAPI document; this test fails when it is stale.

Regenerate with: `.venv/bin/python -m issuer.api.openapi > docs/openapi.json`
"""

from __future__ import annotations

import json

from issuer.api.openapi import openapi_document
from issuer_dev.migrations import repo_root
from support.world import World


def test_committed_openapi_is_current() -> None:
    committed = json.loads((repo_root() / "docs" / "openapi.json").read_text())
    assert committed == openapi_document(), (
        "docs/openapi.json is stale: run `.venv/bin/python -m issuer.api.openapi > docs/openapi.json`"
    )


def test_served_openapi_matches(world: World) -> None:
    assert world.client.get("/openapi.json").json() == openapi_document()
