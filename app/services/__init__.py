"""Service layer: what the API, the CLI and `hpo run` do, independent of HTTP."""
