"""Print the OpenAPI document (``python -m issuer.api.openapi > docs/openapi.json``).

Built from the app's routes and models without a database or Clerk: the
document does not depend on configuration. FastAPI writes it; issuer.api.openapi_shape
corrects it to what the app answers.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from fastapi import FastAPI


def openapi_document() -> dict[str, Any]:
    from issuer.api.app import build_app_without_issuer

    app: FastAPI = build_app_without_issuer()
    return app.openapi()


if __name__ == "__main__":
    sys.stdout.write(json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n")
