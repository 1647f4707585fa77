"""User search algorithms: WMLA plugins (run in a sandboxed process) and Optuna samplers."""
