"""hpo-queue: distributed hyperparameter optimization on Celery + Redis, WMLA-compatible."""

__version__ = "0.1.0"
