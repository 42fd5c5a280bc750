"""Cheap checks on the systemd units in ``systemd/``, run on any machine (no systemd needed).

The units are what operators live with and what the Ansible roles install verbatim, so the
properties they rely on are pinned here: warm shutdown (KillMode=mixed, a stop timeout
longer than the task hard limit), settings only from EnvironmentFile= (no secret on a
command line), the hardening set, and ``systemd-analyze verify``/``security`` run offline
against a throw-away root. The object store's unit (SeaweedFS, its own user, settings in
the files its -config_dir and -options name) meets the same hardening and exposure bar.
The same checks run on installed units in the Molecule verify.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import jinja2
import pytest
import yaml  # type: ignore[import-untyped]

from pixcrawler.celery_core.config import CelerySettings
from pixcrawler.celery_core.queues import QUEUES
from tests.support.paths import REPO
from tests.support.role_templates import ROLES, role_vars

UNIT_DIR = REPO / "systemd"
#: The one source of the paths and the user the units name (group_vars/all/fixed.yml).
FIXED_FILE = ROLES.parent / "group_vars" / "all" / "fixed.yml"
FIXED: dict[str, str] = yaml.safe_load(FIXED_FILE.read_text())["pixcrawler_fixed"]
WORKER = "pixcrawler-worker@.service"
FLOWER = "pixcrawler-flower.service"
BEAT = "pixcrawler-beat.service"
TARGET = "pixcrawler.target"
SERVICES = (WORKER, FLOWER, BEAT)
#: Not a Celery service: no pixcrawler.target, its own user (group_vars/all/fixed.yml).
OBJECTSTORE = "pixcrawler-objectstore.service"
#: Not a Celery service either: `pixcrawler exporter` under its own user, its own settings.
EXPORTER = "pixcrawler-exporter.service"
#: Not a service at all: loads the firewall's nftables table (pixcrawler_firewall role).
FIREWALL = "pixcrawler-firewall.service"
NFT = "/usr/sbin/nft"
PIXCRAWLER = FIXED["venv"] + "/bin/pixcrawler"
CELERY = FIXED["venv"] + "/bin/celery"
WEED = FIXED["objectstore_venv"] + "/bin/weed"
MAIN_ENV = FIXED["env_file"]

Unit = dict[str, dict[str, list[str]]]


def parse_unit(text: str) -> Unit:
    """Sections -> key -> every value in order (systemd allows repeated keys)."""
    unit: Unit = defaultdict(lambda: defaultdict(list))
    section = ""
    logical = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not logical and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        line, logical = logical + line, ""
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        unit[section][key.strip()].append(value.strip())
    return unit


def load(name: str) -> Unit:
    return parse_unit((UNIT_DIR / name).read_text())


def one(unit: Unit, section: str, key: str) -> str:
    values = unit[section][key]
    assert values, f"[{section}] {key}= missing"
    return values[-1]


def env_defaults(unit: Unit) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in unit["Service"]["Environment"]:
        for pair in line.split():
            k, _, v = pair.partition("=")
            out[k] = v
    return out


def seconds(value: str) -> int:
    """systemd time span ("1860", "31min", "1h 2s") in seconds."""
    if value.isdigit():
        return int(value)
    scale = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "hr": 3600}
    total = 0
    for num, suffix in re.findall(r"(\d+)\s*([a-z]+)", value):
        total += int(num) * scale[suffix]
    return total


def test_all_units_exist() -> None:
    present = {p.name for p in UNIT_DIR.iterdir()}
    assert {*SERVICES, OBJECTSTORE, EXPORTER, TARGET} <= present


@pytest.mark.parametrize("name", SERVICES)
def test_warm_shutdown_and_restart_policy(name: str) -> None:
    unit = load(name)
    assert one(unit, "Service", "KillMode") == "mixed"
    # SIGTERM to celery's main process is its warm shutdown; SIGQUIT/SIGINT are not.
    assert unit["Service"]["KillSignal"][-1:] in ([], ["SIGTERM"])
    assert seconds(one(unit, "Service", "TimeoutStopSec")) > 0
    assert one(unit, "Service", "Type") == "simple"
    assert one(unit, "Service", "Restart") in ("always", "on-failure")
    assert seconds(one(unit, "Service", "RestartSec")) >= 1
    assert int(one(unit, "Unit", "StartLimitBurst")) >= 1
    assert seconds(one(unit, "Unit", "StartLimitIntervalSec")) >= 60
    assert one(unit, "Unit", "PartOf") == TARGET
    assert one(unit, "Install", "WantedBy") == TARGET
    assert one(unit, "Service", "User").startswith("pixcrawler")
    assert one(unit, "Service", "Group") == one(unit, "Service", "User")
    assert one(unit, "Service", "SyslogIdentifier").startswith("pixcrawler-")


def test_worker_stop_timeout_exceeds_task_hard_limit() -> None:
    """The drop-in from Ansible overrides it, but the shipped default must be safe too."""
    hard_limit = CelerySettings.model_fields["task_time_limit"].default
    assert isinstance(hard_limit, int)
    assert seconds(one(load(WORKER), "Service", "TimeoutStopSec")) > hard_limit


def test_worker_logs_are_not_throttled_away_by_journald_defaults() -> None:
    """journald's default: 10,000 messages per 30 s per service; a worker logs three per
    task, so a 1,000 tasks/s burst (docs/BENCHMARKS.md) must fit in the unit's own limit."""
    unit = load(WORKER)
    assert seconds(one(unit, "Service", "LogRateLimitIntervalSec")) == 30
    assert int(one(unit, "Service", "LogRateLimitBurst")) >= 3 * 1000 * 30


def test_worker_command_line_takes_every_queue_setting_from_env() -> None:
    unit = load(WORKER)
    exec_start = one(unit, "Service", "ExecStart")
    argv = exec_start.split()
    assert argv[:5] == [CELERY, "-A", "pixcrawler.celery_core.app", "worker", "-Q"]
    assert argv[5] == "${CELERY_QUEUE}"  # worker-%i.env names the queue; defaults to %i
    assert "-n" in argv
    assert argv[argv.index("-n") + 1] == "%i@%H"
    referenced = set(re.findall(r"\$\{(\w+)\}", exec_start))
    contract = {
        "CELERY_QUEUE",
        "CELERY_POOL",
        "CELERY_CONCURRENCY",
        "CELERY_PREFETCH_MULTIPLIER",
        "CELERY_MAX_TASKS_PER_CHILD",
        "CELERY_LOGLEVEL",
    }
    assert contract <= referenced
    # A queue file that omits a setting must not leave an empty argument behind.
    assert referenced <= set(env_defaults(unit))
    assert unit["Service"]["EnvironmentFile"] == [MAIN_ENV, FIXED["config_dir"] + "/worker-%i.env"]


def test_flower_and_beat_read_their_env_files() -> None:
    """Flower reads only its own file: the workers' settings hold the app's Redis identity
    and the image store's keys, which Flower has no use for."""
    assert load(FLOWER)["Service"]["EnvironmentFile"] == [FIXED["flower_env_file"]]
    assert load(BEAT)["Service"]["EnvironmentFile"][0] == MAIN_ENV


# --- one source for the paths and the user: group_vars/all/fixed.yml ---------------------


def unit_drift(units: dict[str, Unit]) -> list[str]:
    """Where the units disagree with fixed.yml (empty: none)."""
    problems = []

    def want(name: str, what: str, got: object, expected: object) -> None:
        if got != expected:
            problems.append(f"{name} {what}: {got!r}, fixed.yml says {expected!r}")

    owners = {FLOWER: ("flower_user", "flower_group")}
    for name, unit in units.items():
        if name in (OBJECTSTORE, EXPORTER, FIREWALL):  # their own users and programs, below
            continue
        service = unit["Service"]
        user, group = owners.get(name, ("user", "group"))
        want(name, "User=", service["User"], [FIXED[user]])
        want(name, "Group=", service["Group"], [FIXED[group]])
        want(name, "ExecStart= program", one(unit, "Service", "ExecStart").split()[0], CELERY)
        if name != FLOWER:
            first = service["EnvironmentFile"][:1]
            want(name, "first EnvironmentFile=", first, [FIXED["env_file"]])
    state = {WORKER: "state_dir", FLOWER: "flower_state_dir", BEAT: "beat_state_dir"}
    for name, key in state.items():
        want(name, "WorkingDirectory=", units[name]["Service"]["WorkingDirectory"], [FIXED[key]])
        want(name, "ReadWritePaths=", units[name]["Service"]["ReadWritePaths"], [FIXED[key]])
    want(
        WORKER,
        "EnvironmentFile=",
        units[WORKER]["Service"]["EnvironmentFile"],
        [FIXED["env_file"], FIXED["config_dir"] + "/worker-%i.env"],
    )
    want(
        FLOWER,
        "EnvironmentFile=",
        units[FLOWER]["Service"]["EnvironmentFile"],
        [FIXED["flower_env_file"]],
    )
    want(FLOWER, "FLOWER_DB", env_defaults(units[FLOWER]).get("FLOWER_DB"), FIXED["flower_db"])
    if OBJECTSTORE in units:
        store = units[OBJECTSTORE]["Service"]
        argv = one(units[OBJECTSTORE], "Service", "ExecStart").split()
        want(OBJECTSTORE, "User=", store["User"], [FIXED["objectstore_user"]])
        want(OBJECTSTORE, "Group=", store["Group"], [FIXED["objectstore_group"]])
        want(OBJECTSTORE, "ExecStart= program", argv[0], WEED)
        # weed's global flags, the command, its one flag (the rest is in the options file)
        want(
            OBJECTSTORE,
            "ExecStart= arguments",
            argv[1:],
            [
                "-logtostderr",
                "-config_dir=" + FIXED["objectstore_config_dir"],
                "server",
                "-options=" + FIXED["objectstore_options_file"],
            ],
        )
        data = [FIXED["objectstore_data_dir"]]
        want(OBJECTSTORE, "WorkingDirectory=", store["WorkingDirectory"], data)
        want(OBJECTSTORE, "ReadWritePaths=", store["ReadWritePaths"], data)
    if EXPORTER in units:
        exporter = units[EXPORTER]["Service"]
        want(EXPORTER, "User=", exporter["User"], [FIXED["exporter_user"]])
        want(EXPORTER, "Group=", exporter["Group"], [FIXED["exporter_group"]])
        want(
            EXPORTER,
            "ExecStart=",
            one(units[EXPORTER], "Service", "ExecStart").split(),
            [PIXCRAWLER, "exporter", "--env-file", FIXED["exporter_env_file"]],
        )
        want(EXPORTER, "EnvironmentFile=", exporter["EnvironmentFile"], [])
    if FIREWALL in units:
        rules, table = FIXED["firewall_rules_file"], FIXED["firewall_table"]
        for key in ("ExecStart", "ExecReload"):
            want(FIREWALL, key + "=", one(units[FIREWALL], "Service", key), f"{NFT} -f {rules}")
        want(
            FIREWALL,
            "ExecStop=",
            one(units[FIREWALL], "Service", "ExecStop"),
            f"-{NFT} delete table inet {table}",
        )
    schedule = re.search(r"--schedule\s+(\S+)", one(units[BEAT], "Service", "ExecStart"))
    want(
        BEAT,
        "--schedule",
        schedule and schedule.group(1),
        FIXED["beat_state_dir"] + "/celerybeat-schedule",
    )
    return problems


def test_fixed_facts_are_consistent_among_themselves() -> None:
    inside = {
        "venv": "home",
        "verify_script": "home",
        "env_file": "config_dir",
        "flower_env_file": "flower_config_dir",
        "storage_dir": "state_dir",
        "beat_state_dir": "state_dir",
        "flower_db": "flower_state_dir",
        "objectstore_venv": "objectstore_home",
        "objectstore_options_file": "objectstore_config_dir",
    }
    for key, parent in inside.items():
        assert FIXED[key].startswith(FIXED[parent] + "/"), f"{key} is not under {parent}"
    assert FIXED["storage_dir"] == str(CelerySettings.model_fields["storage_dir"].default)


def test_units_name_exactly_the_fixed_facts() -> None:
    units = {name: load(name) for name in (*SERVICES, OBJECTSTORE, EXPORTER, FIREWALL)}
    assert unit_drift(units) == []


def test_firewall_drift_is_caught() -> None:
    units = {name: load(name) for name in (*SERVICES, FIREWALL)}
    text = (UNIT_DIR / FIREWALL).read_text().replace("inet pixcrawler", "inet pxc")
    units[FIREWALL] = parse_unit(text)
    assert any("ExecStop" in p for p in unit_drift(units))


def test_objectstore_drift_is_caught() -> None:
    """The store's data directory moved in its unit alone, or its user renamed, fails."""
    units = {name: load(name) for name in (*SERVICES, OBJECTSTORE)}
    text = (UNIT_DIR / OBJECTSTORE).read_text()
    units[OBJECTSTORE] = parse_unit(text.replace(FIXED["objectstore_data_dir"], "/srv/weed"))
    problems = unit_drift(units)
    assert any("WorkingDirectory" in p for p in problems), problems
    assert any("ReadWritePaths" in p for p in problems), problems
    units[OBJECTSTORE] = parse_unit(text.replace("User=pixcrawler-objectstore", "User=weed"))
    assert any("User=" in p for p in unit_drift(units))


def test_unit_drift_is_caught() -> None:
    """Moving one path in one unit, and nowhere else, fails."""
    units = {name: load(name) for name in SERVICES}
    text = (UNIT_DIR / BEAT).read_text().replace("/var/lib/pixcrawler/beat", "/var/lib/beat")
    units[BEAT] = parse_unit(text)
    problems = unit_drift(units)
    assert any("WorkingDirectory" in p for p in problems), problems
    assert any("--schedule" in p for p in problems), problems
    units[BEAT] = load(BEAT)
    units[WORKER] = parse_unit(
        (UNIT_DIR / WORKER).read_text().replace("User=pixcrawler", "User=celery")
    )
    assert any("User=" in p for p in unit_drift(units))


#: The task file that runs a role's program under supervisord, where not supervisor.yml.
SUPERVISOR_TASKS = {"pixcrawler_monitoring": "supervisor-exporter.yml"}


def supervisor_program(role: str, queue: str = "crawl") -> dict[str, object]:
    """The pixcrawler_supervisor_program a role's supervisor.yml passes, rendered."""
    tasks_file = SUPERVISOR_TASKS.get(role, "supervisor.yml")
    tasks = yaml.safe_load((ROLES / role / "tasks" / tasks_file).read_text())
    program = next(
        t["vars"]["pixcrawler_supervisor_program"]
        for t in tasks
        if "ansible.builtin.include_role" in t
    )
    values = {**role_vars(role), "queue": queue, "worker": queue}
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)  # noqa: S701 - not HTML

    def render(value: object) -> object:
        if isinstance(value, str):
            return env.from_string(value).render(values)
        if isinstance(value, list):
            return [render(v) for v in value]
        if isinstance(value, dict):
            return {k: render(v) for k, v in value.items()}
        return value

    return {k: render(v) for k, v in program.items() if k not in ("state", "stopwaitsecs")}


def as_argv(command: str, queue: str) -> list[str]:
    """A unit's ExecStart= or a program's command in one spelling: $VAR, the queue, %h."""
    command = re.sub(r"\$\{(\w+)\}", r"$\1", command).replace('"$', "$")
    command = re.sub(r'(\$\w+)"', r"\1", command)
    return command.replace("%i", queue).replace("%H", "%h").split()


@pytest.mark.parametrize(
    ("role", "name"),
    [
        ("pixcrawler_workers", WORKER),
        ("pixcrawler_flower", FLOWER),
        ("pixcrawler_beat", BEAT),
        ("pixcrawler_objectstore", OBJECTSTORE),
        ("pixcrawler_monitoring", EXPORTER),
    ],
)
def test_supervisor_programs_run_what_the_units_run(role: str, name: str) -> None:
    """Under supervisord the same command, user, directory, env files and defaults."""
    unit, queue = load(name), "crawl"
    program = supervisor_program(role, queue)
    service = unit["Service"]
    assert program["user"] == one(unit, "Service", "User")
    assert program["directory"] == one(unit, "Service", "WorkingDirectory")
    assert program.get("env_files", []) == [
        f.replace("%i", queue) for f in service["EnvironmentFile"]
    ]
    assert as_argv(str(program["command"]), queue) == as_argv(
        one(unit, "Service", "ExecStart"), queue
    )
    defaults = env_defaults(unit)
    environment = program.get("environment") or {}
    assert isinstance(environment, dict)
    assert {k: str(v) for k, v in environment.items()}.items() <= defaults.items()
    if name != WORKER:  # a worker's queue file always sets every CELERY_* value
        assert {k: str(v) for k, v in environment.items()} == defaults


def test_unit_defaults_are_the_roles_defaults() -> None:
    """The fallbacks a unit carries for a settings file that omits a value are the roles'."""
    worker = env_defaults(load(WORKER))
    fallback = role_vars("pixcrawler_workers")["pixcrawler_workers_fallback"]
    for key, value in fallback.items():
        if key != "instances":  # how many units the role starts, not a worker setting
            assert worker[f"CELERY_{key.upper()}"] == str(value), key
    assert worker["CELERY_QUEUE"] == "%i"  # the first worker of a queue is named after it
    flower = env_defaults(load(FLOWER))
    flower_vars = role_vars("pixcrawler_flower")
    assert flower["FLOWER_ADDRESS"] == flower_vars["pixcrawler_flower_address"]
    assert flower["FLOWER_PORT"] == str(flower_vars["pixcrawler_flower_port"])
    assert flower["CELERY_LOGLEVEL"] == flower_vars["pixcrawler_flower_loglevel"]


def test_state_lives_where_the_unit_may_write() -> None:
    beat = load(BEAT)
    schedule = re.search(r"--schedule\s+(\S+)", one(beat, "Service", "ExecStart"))
    assert schedule is not None
    assert str(Path(schedule.group(1)).parent) in one(beat, "Service", "ReadWritePaths").split()
    flower = load(FLOWER)
    db = env_defaults(flower)["FLOWER_DB"]
    assert str(Path(db).parent) in one(flower, "Service", "ReadWritePaths").split()
    worker = load(WORKER)
    storage = str(CelerySettings.model_fields["storage_dir"].default)
    rw = one(worker, "Service", "ReadWritePaths").split()
    assert any(storage == p or storage.startswith(p + "/") for p in rw)


SECRET_PATTERNS = (
    re.compile(r"rediss?://[^\s]*@", re.I),  # URL with credentials
    re.compile(r"PIXCRAWLER_CELERY_\w*(URL|BACKEND|PASSWORD)\w*=", re.I),
    re.compile(r"(password|passwd|secret|token)\s*[=:]", re.I),
    re.compile(r"--(basic[-_]auth|broker|result-backend|password)\b", re.I),
    re.compile(r"FLOWER_(BASIC_AUTH|OAUTH2_SECRET)=", re.I),
)


@pytest.mark.parametrize("name", [*SERVICES, OBJECTSTORE, EXPORTER, FIREWALL, TARGET])
def test_no_secret_in_unit(name: str) -> None:
    for lineno, line in enumerate((UNIT_DIR / name).read_text().splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        for pattern in SECRET_PATTERNS:
            assert not pattern.search(line), f"{name}:{lineno} looks like a secret: {line}"


def test_secret_check_can_fail() -> None:
    bad = "ExecStart=/x/celery -A app worker --broker redis://:hunter2@redis:6379/0"
    assert any(p.search(bad) for p in SECRET_PATTERNS)


HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectHome": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "",
    "UMask": "0027",
}


@pytest.mark.parametrize("name", [*SERVICES, OBJECTSTORE, EXPORTER])
def test_hardening(name: str) -> None:
    unit = load(name)
    for key, expected in HARDENING.items():
        assert one(unit, "Service", key) == expected, key
    assert "@system-service" in unit["Service"]["SystemCallFilter"]
    if name == EXPORTER:  # it writes nothing at all
        assert not unit["Service"]["ReadWritePaths"]
    else:
        assert one(unit, "Service", "ReadWritePaths").startswith("/var/lib/pixcrawler")


def test_objectstore_unit_runs_one_store_and_stops_in_time() -> None:
    """Started by the system (not pixcrawler.target), restarted on any exit, stopped warm."""
    unit = load(OBJECTSTORE)
    assert one(unit, "Install", "WantedBy") == "multi-user.target"
    assert not unit["Unit"]["PartOf"], "the store is not one of the Celery services"
    assert one(unit, "Service", "Type") == "simple"
    assert one(unit, "Service", "Restart") == "always"
    assert one(unit, "Service", "KillSignal") == "SIGTERM"
    # weed waits -volume.preStopSeconds (10 s) before its volume server stops.
    assert 30 <= seconds(one(unit, "Service", "TimeoutStopSec")) <= 300
    assert one(unit, "Service", "SyslogIdentifier") == "pixcrawler-objectstore"
    assert not unit["Service"]["EnvironmentFile"], "weed reads its own files"


def test_target_is_pulled_in_at_boot() -> None:
    assert one(load(TARGET), "Install", "WantedBy") == "multi-user.target"


@pytest.mark.parametrize("queue", [q.name for q in QUEUES])
def test_every_queue_is_a_valid_instance_name(queue: str) -> None:
    # systemd instance names allow [A-Za-z0-9:_.-\\]; anything else would need escaping
    # and the unit name would no longer match the queue name operators type.
    assert re.fullmatch(r"[A-Za-z0-9:_.-]+", queue)


# --- systemd-analyze, offline ------------------------------------------------------------


def _analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze not found: apt-get install systemd (the package, not PID 1)")
    return tool


def _system_unit_dir() -> Path:
    for cand in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")):
        if (cand / "sysinit.target").exists():
            return cand
    pytest.fail("no systemd unit directory with sysinit.target: apt-get install systemd")


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root with Debian's own units, ours, and a stub celery, so verify resolves all."""
    root = tmp_path_factory.mktemp("root")
    shutil.copytree(_system_unit_dir(), root / "usr/lib/systemd/system", symlinks=True)
    etc = root / "etc/systemd/system"
    etc.mkdir(parents=True)
    for unit in UNIT_DIR.iterdir():
        shutil.copy(unit, etc / unit.name)
    # The programs the units run: celery, weed, and kill (the store's ExecReload=).
    for program in (CELERY, WEED, PIXCRAWLER, NFT, "/bin/kill"):
        stub = root / program.lstrip("/")
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    return root


INSTANCES = [f"pixcrawler-worker@{q.name}.service" for q in QUEUES] + [
    FLOWER,
    BEAT,
    OBJECTSTORE,
    EXPORTER,
    FIREWALL,
    TARGET,
]


def verify(root: Path, *units: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_analyze(), "verify", f"--root={root}", *units],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_systemd_analyze_verify(fake_root: Path) -> None:
    proc = verify(fake_root, *INSTANCES)
    # verify exits 0 on unknown keys and bad values, only warning: any output is a failure.
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout + proc.stderr == ""


def test_systemd_analyze_verify_can_fail(fake_root: Path, tmp_path: Path) -> None:
    broken = tmp_path / "root"
    shutil.copytree(fake_root, broken, symlinks=True)
    beat = broken / "etc/systemd/system" / BEAT
    beat.write_text(beat.read_text().replace("KillMode=mixed", "KillMode=mixed\nKillSignal=NOPE"))
    proc = verify(broken, BEAT)
    assert "KillSignal" in proc.stdout + proc.stderr or "signal" in proc.stderr


@pytest.mark.parametrize(
    "name", ["pixcrawler-worker@crawl.service", FLOWER, BEAT, OBJECTSTORE, EXPORTER]
)
def test_systemd_analyze_security_is_ok_or_better(fake_root: Path, name: str) -> None:
    proc = subprocess.run(
        [_analyze(), "security", "--offline=yes", f"--root={fake_root}", "--no-pager", name],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", proc.stdout)
    assert found, proc.stdout + proc.stderr
    exposure, rating = float(found.group(1)), found.group(2)
    # systemd's scale: <=1.9 OK/SAFE/PERFECT, then MEDIUM, EXPOSED, UNSAFE (10.0).
    assert rating in ("PERFECT", "SAFE", "OK"), f"{name}: {exposure} {rating}"
