"""The prose of docs/BENCHMARKS.md: why the numbers come out as they do.

Kept apart from report.py so the renderer stays readable. Statements here were checked
against measurements made while building the benchmark (profiles, commandstats, CPU
per task); the tables of every run show whether they still hold.
"""

WHERE_TIME_GOES = """\
What makes the seed slow, from the tables above and from profiling a worker:

- **The prefork parent is a serial bottleneck.** With prefork, the parent process alone
  does all broker I/O (BRPOP, kombu's unacked bookkeeping, acks, events) and hands each
  task to a child through a pipe and back. Adding children does not add consumers: 35
  children mostly wait, and each costs memory (see peak RSS/PSS). prefork with 2 children
  and a large prefetch was not faster than the seed when tried: the parent stays the
  bottleneck. The solo pool runs the task inside the consuming process (no pipe, no
  pickling), and two solo instances give two independent consumers for two cores.
- **`track_started`** costs one more result write per task (GET + SETEX + PUBLISH: the
  Redis backend reads the current state before every write).
- **Events** (Flower) cost a PUBLISH per event: task-sent from the client, received,
  started and succeeded from the worker, each JSON-encoded and (succeeded) carrying a
  repr of the result. The "events off" rows show the price.
- **Per-task INFO logging** (celery's received/succeeded lines plus BaseTask's own) costs
  CPU and, at hundreds of tasks per second, more lines than journald's default rate limit
  (10,000 per 30 s per unit) lets through. The recommended settings log at WARNING
  (failures and retries are still logged).
- **The client**: `AsyncResult.get()` per task reads each result and subscribes/
  unsubscribes its channel; collecting with `backend.get_many()` (MGET in batches) costs
  almost nothing. Publishing stays the client's main cost (~1 ms of CPU per task in
  Celery's `send_task`: message building, an SMEMBERS exchange lookup and an LPUSH,
  a SUBSCRIBE for the result, and a PUBLISH for the task-sent event). Reusing one
  producer saves little CPU because Celery's producer pool already reuses connections.
  In the "ours" rows the client, not the workers, is usually the bottleneck: burst
  latency stays low because the workers keep up with publishing.
- **kombu builds a new `redis.Redis` object for every command it sends** (publish, ack,
  event, exchange lookup); redis-py's constructor copies ~200 response callbacks each
  time, about 100 us of CPU, three to six times per task on each side. The
  "+ client reuse" rows measure the one-class change described below (now in the package).
- **hiredis** is installed (it comes with `redis[hiredis]`) and redis-py uses it for
  every reply in both rows; reply parsing did not show up as a cost when profiling.
- **Redis itself is not the limit**: it spends a fraction of a millisecond of CPU per
  task (last column of the CPU split), and `redis-benchmark` in (b) shows it serving
  tens of thousands of commands per second against the ~20 commands a task needs.
- On this shared 2-core machine all processes (client, workers, Redis, other jobs)
  compete for the same cores, so the CPU per task (client + worker + Redis) is the most
  stable figure: 2 cores / total CPU per task bounds the throughput on an idle machine.\
"""

REDIS_BENCHMARK_NOTE = """\
`redis-benchmark` takes a password only on its command line, where `ps` shows it. It
therefore never gets the server's real password: it runs as a throwaway ACL user with
its own random password, allowed only the benchmark's keys in database 9, created just
before the run and deleted just after. That throwaway password is visible in `ps` for
the seconds the run lasts, which is acceptable for a benchmark server bound to loopback;
the password the workers use never appears on any command line. LPUSH and RPOP pay for
AOF (`appendfsync everysec`) as the broker does.\
"""

CRAWL_NOTE = """\
Downloading is waiting: each image takes the server's 100 ms, so throughput is at most
the number of downloads in flight divided by 100 ms, and in practice the per-task CPU
(Celery, httpx, hashing, fsync) limits it first. The seed gets 35 in flight from 35
prefork processes (about 75 MiB RSS each); ours gets 64 per process from a threads pool,
with one process per core because the per-task Python work holds the GIL. Threads
share one `httpx.Client` per process (the fetch code creates it lazily); its default
pool of 100 connections caps useful concurrency per process at 100. Time limits: the
threads pool does not enforce `task_time_limit`/`task_soft_time_limit` (only prefork
does); the crawl code bounds each download itself (connect/read timeouts and
`CRAWL_TOTAL_TIMEOUT`).\
"""

RECOMMEND_DEFAULT = """\
  One solo worker per core (run them as separate units, e.g. a templated
  `pixcrawler-worker@default-1`, `-2`): the solo pool has no parent/child pipe, and each
  instance is its own consumer. Prefetch 4 keeps each instance fed while bounding the
  tasks that wait for `visibility_timeout` if an instance is SIGKILLed (4 per instance).
  WARNING log level and events off on this queue only: at hundreds of tasks per second
  per-task log lines exceed journald's rate limit, and events add four PUBLISHes and
  their encoding to every task (compare the CPU columns of "ours" and "ours, events
  on"); Flower still sees crawl, validation and maintenance. With client reuse (below),
  events can stay on ("ours + client reuse, events on"). The solo pool does not enforce
  time limits and runs one task at a time: anything slow or untrusted belongs on another
  queue. If the deployment runs only one unit per queue, the threads pool with
  concurrency 4 ("ours, threads pool") is the fallback.\
"""

RECOMMEND_CRAWL = """\
  Threads, 64 per process, one process per core: downloads are I/O-bound and need many
  in flight, but the per-task Python work holds the GIL, so one process cannot use more
  than one core. Prefetch 2 reserves at most 128 messages per process. Keep concurrency
  at or below 100 per process (the shared httpx pool size). `max_tasks_per_child` does
  not apply to threads; cap memory with systemd's `MemoryMax=` instead. WARNING log
  level: failures and retries still log (they are WARNING/ERROR), successes are counted
  by events.\
"""

RECOMMEND_VALIDATION = """\
  Prefork with one child, one worker per core: decoding is CPU-bound and holds the GIL,
  so more processes than cores only add memory and context switches. Each worker's
  parent fetches, acks and stores results while its child decodes, and two parents do
  not queue behind each other (one prefork worker with two children was slower when
  tried: its single parent serialises the broker work of both). Prefork because
  untrusted images are decoded: the child is the only place where the hard time limit
  is enforced, a crashing decoder takes down a child and not the consumer, and
  `max_tasks_per_child` 1000 returns memory fragmented by large decodes. "ours, solo
  pool" shows what dropping that isolation would buy (no pipe to the child, no
  pickling of results). Prefetch 4 hides the broker round trip between decodes
  (prefetch 1 was clearly slower when tried). On a machine shared with other work, 35
  processes win a larger share of the CPU than 2 do, which flatters the seed here;
  compare the CPU per image and the memory.\
"""

RECOMMEND_MAINTENANCE = """\
  One prefork process: cleanups are rare, long scans; prefork enforces the time limits;
  prefetch 1 so a long cleanup never holds a second one hostage; the child is recycled
  every 100 tasks; INFO log level because each run's counts are worth a line.\
"""

PATCH_NOTE = """\
Applied to the package as `pixcrawler/celery_core/transport.py`, on by default and
switched by `PIXCRAWLER_CELERY_REDIS_CLIENT_REUSE`; the "+ client reuse" rows turn it on,
every other row (the seed's included) turns it off, so the gain is measured, not
estimated. It is a transport subclass selected by `broker_transport`, a supported Celery
setting, rather than a monkeypatch; commands still go through kombu's connection pool,
so reconnects, `visibility_timeout` and acks behave as before. Sentinel URLs keep
kombu's own sentinel transport.

The same transport records each delivery's owner for requeue on restart
(`PIXCRAWLER_CELERY_REQUEUE_ON_RESTART`, README "Restarts lose no task"): one HSET on
delivery and one HDEL on ack, inside the MULTI/EXEC kombu already sends. The "+ client
reuse" rows have it on, the "no requeue on restart" row the same settings without it:
the command table shows the two commands per task, the throughput and CPU columns what
they cost.\
"""

STORAGE_NOTE = """\
Each chain is two tasks; with S3 the crawl adds a HEAD and a PUT per image and the
validation a GET, all on loopback, where a real object store adds its network round
trips. The S3 client is obstore (Rust, chosen over boto3 and minio by import time and
memory: each worker process loads it), so the memory column shows what it adds to every
crawl and validation process. SeaweedFS's own CPU and memory are not in the worker
columns: it is the object store, a separate service, as Redis is.\
"""

CAVEATS = """\
- The machine was shared with other jobs during the run (load averages above); each
  configuration ran interleaved with the others, and rounds that moved a lot show it in
  the "each round" column.
- Peak RSS sums VmRSS over the worker's processes, counting pages shared after fork once
  per process; PSS (from `smaps_rollup`) splits shared pages and is closer to what the
  host spends. Both sampled every 0.25-0.5 s.
- Workers run with `--without-gossip --without-mingle` (as the test harness and the
  systemd units start them) and log to a file.
- CPU per task for Redis comes from `INFO cpu`; for the worker from /proc (main process,
  live children and reaped children); for the client from the benchmark process.
- No timed assertions exist anywhere: this is a report, not a test; `tests/` does not
  run it.\
"""
