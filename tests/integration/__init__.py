"""Integration tests: a real redis-server and real Celery workers (marker ``integration``)."""
