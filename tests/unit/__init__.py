"""Unit tests: no Redis, no worker, no host; the package, the roles and the units read as files."""
