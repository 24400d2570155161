"""Organization-scoped tokens with pooled, seat-gated credits."""

#: The release version, the one source of it: pyproject.toml reads it (dynamic
#: version), `make dist` names the Supabase bundle with it, GET /version serves
#: it, and extension/package.json must say the same (py/tests/test_version.py).
__version__ = "0.1.0"
