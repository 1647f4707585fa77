"""Workers: the Celery app, the run_trial task and the trial runner."""
