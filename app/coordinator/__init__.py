"""Coordinator: drives running experiments (ask, record, publish, consume events, finish)."""
