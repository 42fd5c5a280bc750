"""Test-only tasks, loaded into test workers with ``-I tests.support_tasks``."""
