"""The HTTP API: WMLA-compatible routes, the native /api/v1, and logon. Thin routes over app.services."""
