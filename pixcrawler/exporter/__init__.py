"""``pixcrawler exporter``: Prometheus metrics for what operators of Celery on Redis miss.

Workers that look alive but consume nothing while the backlog grows; backlogs that
exporters counting one Redis list per queue undercount (kombu keeps each priority in its
own list); a Redis that refuses new tasks because ``noeviction`` met ``maxmemory``.

One module per job: :mod:`.queues` reads backlog, oldest age and unacknowledged
deliveries from Redis; :mod:`.broker` Redis's own state and the Sentinels'; :mod:`.events`
follows the workers' Celery events (heartbeats, task outcomes and runtimes);
:mod:`.store` asks the image store whether it answers; :mod:`.collector` turns one
scrape into metric families, counting a failing part instead of failing the scrape;
:mod:`.server` serves ``/metrics``.

The exporter only reads. :data:`REDIS_ACL_RULES` is everything its Redis user needs
(measured against the role's ACLs in tests/integration/test_exporter.py): the keys it
reads, the pub/sub pattern of Celery's events, and no write command at all.
"""

from __future__ import annotations

#: The exporter's Redis ACL rules, after ``user <name> on #<sha256>``. ``%R~*``: read
#: any key (queues, the unacked hash); ``&/*.celeryev/*``: only Celery's event channels
#: (kombu names them ``/<db>.celeryev/<routing key>``; a PSUBSCRIBE pattern must match an
#: allowed pattern literally, hence the pattern and not a narrower one).
REDIS_ACL_RULES = (
    "resetkeys %R~* resetchannels &/*.celeryev/* -@all "
    "+ping +hello +select +info +llen +lindex +hscan +psubscribe +punsubscribe"
)
