"""Cheap checks of the Ansible bundle: linters, syntax, role contracts, and preflight.

The preflight cases run the real playbook in ``--check`` mode against this machine with a
deliberately broken inventory or variable, and assert two things: the run fails naming the
variable, and it stopped before the first play that changes anything ("Redis broker").
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
from pathlib import Path

import pytest

from tests.support.ansible_tools import clean_env, tool
from tests.support.paths import ANSIBLE_DIR
from tests.support.paths import REPO as ROOT

yaml = pytest.importorskip("yaml")

ROLES_DIR = ANSIBLE_DIR / "roles"
#: Roles are directories with tasks; pixcrawler_monitoring holds only its alert rules
#: (files/, tested by test_alert_rules.py) until the role itself is written.
ROLES = sorted(p.name for p in ROLES_DIR.iterdir() if (p / "tasks").is_dir())
#: The example vault password the committed staging/prod vaults are encrypted with.
EXAMPLE_VAULT_PASSWORD = "pixcrawler-example-vault-password"
FIRST_CHANGING_PLAY = "PLAY [Process manager"


def run(
    args: list[str | Path], cwd: Path = ROOT, timeout: int = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_yamllint_passes() -> None:
    mine = [
        p
        for p in [*ANSIBLE_DIR.rglob("*.yml"), *(ROOT / "env").rglob("*.yml")]
        if "molecule" not in p.relative_to(ROOT).parts and not p.name.endswith("vault.yml")
    ]
    result = run([tool("yamllint"), "--strict", "-f", "parsable", ".yamllint", *mine])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(600)
def test_ansible_lint_production_profile_passes() -> None:
    result = run([tool("ansible-lint"), "--offline", "ansible/site.yml", "ansible/roles"])
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "Profile 'production' was required, and it passed" in result.stdout + result.stderr


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_syntax_check(env: str) -> None:
    result = run(
        [tool("ansible-playbook"), "site.yml", "--syntax-check", "-e", f"env={env}"],
        cwd=ANSIBLE_DIR,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("role", ROLES)
def test_role_has_argument_specs_and_commented_defaults(role: str) -> None:
    path = ROLES_DIR / role
    specs = yaml.safe_load((path / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    assert specs["argument_specs"]["main"].get("short_description")
    for name, spec in options.items():
        assert spec.get("description"), f"{role}: {name} has no description"
    defaults_file = path / "defaults" / "main.yml"
    assert defaults_file.is_file(), f"{role} has no defaults/main.yml"
    lines = defaults_file.read_text().splitlines()
    defaults = yaml.safe_load(defaults_file.read_text()) or {}
    for name in defaults:
        assert name in options, f"{role}: default {name} missing from argument_specs"
        index = next(i for i, line in enumerate(lines) if line.startswith(f"{name}:"))
        above = [line for line in lines[:index] if line.strip()]
        # A one-line comment per variable; consecutive related ones may share one.
        assert above, f"{role}: {name} has no comment above it"
        assert above[-1].startswith("#") or re.match(r"^\w+:", above[-1]), (
            f"{role}: {name} has no comment above it"
        )
    assert any(line.startswith("#") for line in lines), f"{role}: defaults have no comments"


@pytest.mark.parametrize("role", ROLES)
def test_argument_spec_defaults_are_the_role_defaults(role: str) -> None:
    """A default written in meta/argument_specs.yml is the one in defaults/main.yml.

    The spec may omit a default (templated ones, say); when it states one, it must be the
    value the role really uses: its defaults/main.yml, or group_vars/all for shared ones.
    """
    path = ROLES_DIR / role
    specs = yaml.safe_load((path / "meta" / "argument_specs.yml").read_text())
    defaults: dict[str, object] = {}
    for shared in sorted((ANSIBLE_DIR / "group_vars" / "all").glob("*.yml")):
        defaults.update(yaml.safe_load(shared.read_text()) or {})
    defaults.update(yaml.safe_load((path / "defaults" / "main.yml").read_text()) or {})
    for entry, spec in specs["argument_specs"].items():
        for name, option in spec.get("options", {}).items():
            if "default" not in option or entry != "main":
                continue
            assert name in defaults, f"{role}: the spec gives {name} a default the role lacks"
            assert option["default"] == defaults[name], (
                f"{role}: {name} defaults to {defaults[name]!r}, "
                f"the spec says {option['default']!r}"
            )


def test_shared_defaults_match_the_package() -> None:
    """The task hard time limit the workers' stop timeout outlasts is the package's."""
    from pixcrawler.celery_core.config import CelerySettings

    shared = (ANSIBLE_DIR / "group_vars" / "all" / "main.yml").read_text()
    found = re.search(r"task_time_limit \| default\((\d+)\)", shared)
    assert found, "pixcrawler_task_time_limit no longer falls back to a number"
    assert int(found.group(1)) == CelerySettings.model_fields["task_time_limit"].default


def test_fixed_facts_are_not_settings() -> None:
    """No environment, inventory or role sets what the units name (group_vars/all/fixed.yml)."""
    fixed = yaml.safe_load((ANSIBLE_DIR / "group_vars" / "all" / "fixed.yml").read_text())
    assert list(fixed) == ["pixcrawler_fixed"]
    for path in [*ROOT.joinpath("env").rglob("*.yml"), *ROLES_DIR.glob("*/defaults/*.yml")]:
        if path.name == "vault.yml":
            continue
        data = yaml.safe_load(path.read_text()) or {}
        assert "pixcrawler_fixed" not in str(list(data)), path
    # Per-role copies of the fixed facts are gone.
    old = re.compile(
        r"pixcrawler_(app_(user|group|home|venv|env_file|state_dir|storage_dir|verify_script)"
        r"|beat_state_dir|flower_state_dir|flower_db|verify_(script|python|env_file))\b"
    )
    for path in [
        *ANSIBLE_DIR.rglob("*.yml"),
        *ANSIBLE_DIR.rglob("*.j2"),
        *ROOT.joinpath("env").rglob("*.yml"),
    ]:
        assert not old.search(path.read_text(errors="replace")), path
    # The tasks and templates take the paths from pixcrawler_fixed, never literally.
    literal = re.compile(r"/(opt|etc|var/lib)/pixcrawler\b")
    for path in [*ROLES_DIR.glob("*/tasks/*.yml"), *ROLES_DIR.glob("*/templates/*.j2")]:
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if not line.lstrip().startswith("#"):
                assert not literal.search(line), f"{path}:{lineno}: {line.strip()}"


def test_roles_install_the_unit_files_from_systemd_dir() -> None:
    """One source of truth: the roles copy systemd/*, they never template their own."""
    units = {p.name for p in (ROOT / "systemd").glob("pixcrawler*")}
    copied = set()
    for tasks in ROLES_DIR.glob("*/tasks/*.yml"):
        copied |= set(re.findall(r"(pixcrawler[-\w@]*\.(?:service|target))", tasks.read_text()))
    templates = {p.name for p in ROLES_DIR.glob("*/templates/*")}
    assert units <= copied, f"unit files no role installs: {units - copied}"
    assert not any(t.endswith((".service.j2", ".target.j2")) for t in templates)


def test_queue_names_are_not_hard_coded_outside_the_package() -> None:
    """The inventory check reads the package; no list of every queue lives in ansible/."""
    from pixcrawler.celery_core.queues import QUEUE_NAMES

    everything = re.compile(r"\[\s*" + r"\s*,\s*".join(QUEUE_NAMES) + r"\s*\]")
    for path in [*ANSIBLE_DIR.rglob("*.yml"), *ROOT.joinpath("env").rglob("*.yml")]:
        if "molecule" in path.parts:
            continue
        assert not everything.search(path.read_text(errors="replace")), path


def test_vaults_are_encrypted() -> None:
    for env in ("staging", "prod"):
        text = (ROOT / "env" / env / "vault.yml").read_text()
        assert text.startswith("$ANSIBLE_VAULT;"), f"env/{env}/vault.yml is not encrypted"


# --- preflight: a bad variable fails before any host changes -----------------------------


def preflight(tmp_path: Path, env: str, inventory: str, *extra: str) -> str:
    """Run site.yml --check with *inventory*; return its output (it must fail)."""
    inv = tmp_path / "hosts.yml"
    inv.write_text(inventory)
    vault = tmp_path / "vault-pass"
    vault.write_text(EXAMPLE_VAULT_PASSWORD + "\n")
    result = run(
        [
            tool("ansible-playbook"),
            "site.yml",
            "--check",
            "-i",
            inv,
            "-e",
            f"env={env}",
            "--vault-password-file",
            vault,
            *extra,
        ],
        cwd=ANSIBLE_DIR,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert FIRST_CHANGING_PLAY not in output, "the run went past the preflight play"
    assert re.search(r"changed=0\s", output), output[-2000:]
    return output


def local_inventory(env: str, workers_vars: str = "", beat_hosts: str = "localhost:") -> str:
    return f"""
{env}:
  hosts:
    localhost:
      ansible_connection: local
      ansible_python_interpreter: /usr/bin/python3
      ansible_become: false
    other.invalid:
redis:
  hosts:
    localhost:
workers:
  hosts:
    localhost:
{workers_vars}
flower:
  hosts:
    localhost:
beat:
  hosts:
    {beat_hosts}
"""


def one_host_preflight(tmp_path: Path, *extra: str, env: str = "dev") -> str:
    """preflight() on *env* with this machine as its only host."""
    inventory = local_inventory(env).replace("    other.invalid:\n", "")
    return preflight(tmp_path, env, inventory, *extra)


def strong_vault_overrides() -> tuple[str, list[str]]:
    """-e pairs that replace the committed prod vault's placeholder passwords with strong
    ones, so a test reaches the check it is about; and the secret they share, which no
    output may show."""
    strong = secrets.token_hex(16)
    names = (
        "vault_pixcrawler_redis_app_password",
        "vault_pixcrawler_redis_flower_password",
        "vault_pixcrawler_flower_basic_auth_password",
    )
    return strong, [arg for i, n in enumerate(names) for arg in ("-e", f"{n}={'abc'[i]}{strong}")]


needs_local_deploy_tools = pytest.mark.skipif(
    not Path("/usr/bin/python3").exists(), reason="needs /usr/bin/python3 (Debian)"
)


@needs_local_deploy_tools
def test_unknown_queue_fails_before_changes(tmp_path: Path) -> None:
    inventory = local_inventory(
        "dev", "      pixcrawler_workers_queues: [crawl, thumbnails]"
    ).replace("    other.invalid:\n", "")
    output = preflight(tmp_path, "dev", inventory)
    assert "pixcrawler_workers_queues" in output
    assert "thumbnails" in output
    from pixcrawler.celery_core.queues import QUEUE_NAMES

    assert ", ".join(QUEUE_NAMES) in output  # the list comes from the package


@needs_local_deploy_tools
def test_queue_without_consumer_fails_before_changes(tmp_path: Path) -> None:
    inventory = local_inventory(
        "dev", "      pixcrawler_workers_queues: [crawl, validation, default]"
    ).replace("    other.invalid:\n", "")
    output = preflight(tmp_path, "dev", inventory)
    assert "no worker host consumes maintenance" in output
    # Said on purpose, the same inventory gets past that check (and fails on a later one).
    output = preflight(
        tmp_path,
        "dev",
        inventory,
        "-e",
        '{"pixcrawler_preflight_unconsumed_queues": ["maintenance"]}',
        "-e",
        "pixcrawler_redis_maxmemory_policy=allkeys-lru",
    )
    assert "no worker host consumes" not in output
    assert "pixcrawler_redis_maxmemory_policy" in output


@needs_local_deploy_tools
def test_two_beat_hosts_fail_before_changes(tmp_path: Path) -> None:
    inventory = local_inventory("dev", beat_hosts="localhost:\n    other.invalid:")
    output = preflight(tmp_path, "dev", inventory, "--limit", "localhost")
    assert "exactly one in beat" in output
    assert "other.invalid" in output


@needs_local_deploy_tools
def test_settings_the_package_rejects_fail_before_changes(tmp_path: Path) -> None:
    output = one_host_preflight(
        tmp_path,
        "-e",
        '{"pixcrawler_settings": {"task_time_limit": 60, "task_soft_time_limit": 90}}',
    )
    assert "PIXCRAWLER_CELERY_TASK_SOFT_TIME_LIMIT" in output


@needs_local_deploy_tools
def test_argument_spec_violation_fails_before_changes(tmp_path: Path) -> None:
    output = one_host_preflight(tmp_path, "-e", "pixcrawler_redis_maxmemory_policy=allkeys-lru")
    assert "pixcrawler_redis_maxmemory_policy" in output


@needs_local_deploy_tools
def test_missing_password_fails_before_changes_naming_it(tmp_path: Path) -> None:
    output = one_host_preflight(tmp_path, "-e", "pixcrawler_redis_flower_password=")
    assert "pixcrawler_redis_flower_password is missing or empty" in output


@needs_local_deploy_tools
@pytest.mark.parametrize("env", ["staging", "prod"])
def test_weak_vault_placeholders_are_refused(tmp_path: Path, env: str) -> None:
    inventory = local_inventory(env).replace("    other.invalid:\n", "")
    output = preflight(tmp_path, env, inventory)
    assert "pixcrawler_redis_app_password is weak" in output
    for secret in ("CHANGE-ME-redis-app", "CHANGE-ME-redis-flower", "CHANGE-ME-flower-ui"):
        assert secret not in output


@needs_local_deploy_tools
def test_missing_flower_credentials_are_refused_in_prod(tmp_path: Path) -> None:
    inventory = local_inventory("prod").replace("    other.invalid:\n", "")
    strong, overrides = strong_vault_overrides()
    output = preflight(
        tmp_path,
        "prod",
        inventory,
        *overrides,
        "-e",
        "vault_pixcrawler_flower_basic_auth_user=",
    )
    assert "needs Flower basic auth" in output
    assert strong not in output


@needs_local_deploy_tools
def test_bad_operator_address_for_the_firewall_fails_before_changes(tmp_path: Path) -> None:
    sources = json.dumps(
        {"pixcrawler_firewall_operator_sources": ["192.0.2.0/24", "office-vpn", "10.0.0.300"]}
    )
    output = one_host_preflight(tmp_path, "-e", "pixcrawler_firewall_enabled=true", "-e", sources)
    assert "pixcrawler_firewall_operator_sources" in output
    assert "not: office-vpn, 10.0.0.300." in output


@needs_local_deploy_tools
def test_a_host_without_addresses_for_the_firewall_fails_before_changes(tmp_path: Path) -> None:
    """With --limit the other hosts' facts are missing: the allowlist would shut them out."""
    output = preflight(
        tmp_path,
        "dev",
        local_inventory("dev"),
        "--limit",
        "localhost",
        "-e",
        "pixcrawler_firewall_enabled=true",
    )
    assert "these have none: other.invalid." in output


@needs_local_deploy_tools
def test_the_firewall_on_a_supervisord_host_fails_before_changes(tmp_path: Path) -> None:
    """This machine runs no systemd as PID 1: nothing would load the table at boot."""
    output = one_host_preflight(tmp_path, "-e", "pixcrawler_firewall_enabled=true")
    assert "The firewall needs systemd to load its table at boot" in output
    # Switched off for the host (its firewall managed elsewhere), the run gets past it.
    output = one_host_preflight(
        tmp_path,
        "-e",
        "pixcrawler_firewall_enabled=false",
        "-e",
        "pixcrawler_redis_maxmemory_policy=allkeys-lru",
    )
    assert "needs systemd" not in output
    assert "pixcrawler_redis_maxmemory_policy" in output


@needs_local_deploy_tools
def test_a_firewall_that_would_close_the_ansible_port_fails_before_changes(
    tmp_path: Path,
) -> None:
    """SSH moved onto the Redis port: the converge would cut its own connection."""
    output = one_host_preflight(
        tmp_path,
        "-e",
        "pixcrawler_firewall_enabled=true",
        "-e",
        "pixcrawler_firewall_ansible_port=6379",
    )
    assert "Ansible connects to localhost on port 6379" in output
    assert "the converge would lock itself out" in output
    # This machine's own connection (local, no port) passes that check.
    assert "lock itself out" not in one_host_preflight(
        tmp_path, "-e", "pixcrawler_firewall_enabled=true"
    )


@needs_local_deploy_tools
def test_tls_without_a_ca_passphrase_fails_before_changes(tmp_path: Path) -> None:
    output = one_host_preflight(tmp_path, "-e", "pixcrawler_tls=true")
    assert "pixcrawler_pki_ca_passphrase" in output
    assert "is missing or empty" in output
    passphrase = "pixcrawler_pki_ca_passphrase=CHANGE-ME-pki-ca"
    weak = one_host_preflight(tmp_path, "-e", "pixcrawler_tls=true", "-e", passphrase)
    assert "is weak" in weak
    assert "CHANGE-ME-pki-ca" not in weak


@needs_local_deploy_tools
def test_tls_with_missing_certificate_files_fails_before_changes(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("a CA\n")
    files = ["pixcrawler_pki_source=files", f"pixcrawler_pki_ca_file={ca}"]
    files.append(f"pixcrawler_pki_cert_file={tmp_path / 'host.crt'}")
    output = one_host_preflight(
        tmp_path, "-e", "pixcrawler_tls=true", *(a for f in files for a in ("-e", f))
    )
    assert (
        "these name no file on the controller: pixcrawler_pki_cert_file, pixcrawler_pki_key_file"
        in output
    )


@needs_local_deploy_tools
def test_worker_hosts_sharing_a_host_name_fail_before_changes(tmp_path: Path) -> None:
    """Two inventory names for one machine: both workers would be crawl@<its name>."""
    twin = (
        "    twin:\n      ansible_connection: local\n"
        "      ansible_python_interpreter: /usr/bin/python3\n      ansible_become: false\n"
    )
    inventory = (
        local_inventory("dev")
        .replace("    other.invalid:\n", twin)
        .replace(
            "workers:\n  hosts:\n    localhost:\n",
            "workers:\n  hosts:\n    localhost:\n    twin:\n",
        )
    )
    # Both names are this machine, so they do share its disk: past the image-store check.
    output = preflight(
        tmp_path, "dev", inventory, "-e", '{"pixcrawler_storage_shared_filesystem": true}'
    )
    assert "worker hosts share a host name" in output
    assert "localhost is " in output
    assert "twin is " in output


# --- the image store -----------------------------------------------------------------------


def _with_group(inventory: str, group: str, hosts: str) -> str:
    return inventory + f"{group}:\n  hosts:\n{hosts}"


@needs_local_deploy_tools
def test_worker_hosts_without_one_image_store_fail_before_changes(tmp_path: Path) -> None:
    """Two worker hosts, no S3, no shared filesystem declared: a chain would miss its image."""
    inventory = local_inventory("dev").replace(
        "workers:\n  hosts:\n    localhost:\n",
        "workers:\n  hosts:\n    localhost:\n    other.invalid:\n",
    )
    output = preflight(tmp_path, "dev", inventory, "--limit", "localhost")
    assert "no S3 store" in output
    assert "pixcrawler_storage_shared_filesystem" in output
    assert "pixcrawler_storage_s3_endpoint_url" in output
    # Declared, the same inventory gets past that check (and fails on a later one: the
    # unreachable host has no facts).
    output = preflight(
        tmp_path,
        "dev",
        inventory,
        "--limit",
        "localhost",
        "-e",
        '{"pixcrawler_storage_shared_filesystem": true}',
    )
    assert "no S3 store" not in output


@needs_local_deploy_tools
def test_two_object_stores_fail_before_changes(tmp_path: Path) -> None:
    inventory = _with_group(
        local_inventory("dev"), "objectstore", "    localhost:\n    other.invalid:\n"
    )
    output = preflight(tmp_path, "dev", inventory, "--limit", "localhost")
    assert "2 hosts in the objectstore group" in output
    assert "other.invalid" in output
    # The one being retired does not count.
    retired = inventory.replace(
        "objectstore:\n  hosts:\n    localhost:\n    other.invalid:\n",
        "objectstore:\n  hosts:\n    localhost:\n    other.invalid:\n"
        "      pixcrawler_objectstore_state: absent\n",
    )
    output = preflight(
        tmp_path,
        "dev",
        retired,
        "--limit",
        "localhost",
        "-e",
        "pixcrawler_redis_maxmemory_policy=allkeys-lru",
    )
    assert "objectstore group" not in output
    assert "pixcrawler_redis_maxmemory_policy" in output


@needs_local_deploy_tools
def test_placeholder_s3_keys_are_refused_in_prod(tmp_path: Path) -> None:
    inventory = _with_group(
        local_inventory("prod").replace("    other.invalid:\n", ""),
        "objectstore",
        "    localhost:\n",
    )
    strong, overrides = strong_vault_overrides()
    output = preflight(
        tmp_path,
        "prod",
        inventory,
        *overrides,
    )
    assert "pixcrawler_storage_s3_access_key_id is weak" in output
    for placeholder in ("CHANGE-ME-s3-app-secret", "CHANGE-ME-s3-admin-secret"):
        assert placeholder not in output
    assert strong not in output


@needs_local_deploy_tools
def test_role_set_storage_settings_are_refused(tmp_path: Path) -> None:
    inventory = local_inventory("dev").replace("    other.invalid:\n", "")
    output = preflight(
        tmp_path, "dev", inventory, "-e", '{"pixcrawler_settings": {"storage_url": "s3://x"}}'
    )
    assert "offending keys: storage_url" in output


def _sentinel_inventory(redis: list[str], sentinels: list[str]) -> str:
    """dev on localhost, with more Redis hosts and Sentinels (names that never resolve)."""
    inventory = local_inventory("dev").replace(
        "    other.invalid:\n",
        "".join(f"    {h}:\n" for h in sorted(set(redis + sentinels) - {"localhost"})),
    )
    inventory = inventory.replace(
        "redis:\n  hosts:\n    localhost:\n",
        "redis:\n  hosts:\n" + "".join(f"    {h}:\n" for h in redis),
    )
    return _with_group(inventory, "sentinel", "".join(f"    {h}:\n" for h in sentinels))


@needs_local_deploy_tools
@pytest.mark.parametrize(
    ("redis", "sentinels", "extra", "expected"),
    [
        # an even number of Sentinels, and fewer than three
        (
            ["localhost", "r2.invalid"],
            ["localhost", "r2.invalid"],
            [],
            "2 hosts in the sentinel group",
        ),
        # replicas that nothing would promote
        (
            ["localhost", "r2.invalid"],
            [],
            [],
            "With no Sentinel the redis group has exactly one host",
        ),
        # a quorum the Sentinels can never reach
        (
            ["localhost", "r2.invalid", "r3.invalid"],
            ["localhost", "r2.invalid", "r3.invalid"],
            ["-e", "pixcrawler_sentinel_quorum=4"],
            "pixcrawler_sentinel_quorum is 4",
        ),
        # replicas without a master
        (
            ["localhost", "r2.invalid", "r3.invalid"],
            ["localhost", "r2.invalid", "r3.invalid"],
            ["-e", "pixcrawler_redis_initial_master=elsewhere.invalid"],
            "pixcrawler_redis_initial_master (elsewhere.invalid) must be one of",
        ),
        # a good layout gets past those checks, to the secrets Sentinel mode needs
        (
            ["localhost", "r2.invalid", "r3.invalid"],
            ["localhost", "r2.invalid", "r3.invalid"],
            [],
            "pixcrawler_redis_replication_password is missing or empty",
        ),
    ],
    ids=["two-sentinels", "replicas-without-sentinels", "quorum-too-large", "no-master", "good"],
)
def test_a_bad_sentinel_layout_fails_before_changes(
    tmp_path: Path, redis: list[str], sentinels: list[str], extra: list[str], expected: str
) -> None:
    output = preflight(
        tmp_path, "dev", _sentinel_inventory(redis, sentinels), "--limit", "localhost", *extra
    )
    assert expected in output, output[-3000:]


def test_sentinel_client_acl_is_what_the_clients_were_proven_to_need() -> None:
    """The role's Sentinel client user may run exactly the commands that
    tests/integration/test_sentinel_ha.py runs every client path with (its ACL LOG stays
    empty there); a rule added or dropped on one side only fails here."""
    from tests.support.role_templates import render
    from tests.support.sentinels import SENTINEL_CLIENT_COMMANDS

    acl = render(
        "pixcrawler_sentinel",
        "sentinel-users.acl.j2",
        pixcrawler_sentinel_client_user="pixcrawler",
        pixcrawler_sentinel_client_password="client-secret",
        pixcrawler_sentinel_admin_password="admin-secret",
    )
    users = {line.split()[1]: line.split() for line in acl.splitlines() if line.startswith("user ")}
    client = users["pixcrawler"]
    assert {"-@all", "resetkeys", "resetchannels"} <= set(client)
    assert {word[1:] for word in client if word.startswith("+")} == set(SENTINEL_CLIENT_COMMANDS)
    assert "off" in users["default"]
    assert "client-secret" not in acl  # hashes only
    assert "admin-secret" not in acl


#: What the Redis role's monitoring user may run beyond ``pixcrawler exporter``'s own
#: rules: Debian's prometheus-redis-exporter's slow log and latency reports (read-only).
REDIS_EXPORTER_EXTRA = {"+slowlog|get", "+slowlog|len", "+latency|latest"}


def test_monitoring_redis_user_is_the_exporters_rules_and_reads_only() -> None:
    """The role's ``monitor`` user carries pixcrawler.exporter.REDIS_ACL_RULES verbatim
    (what tests/integration/test_exporter.py proves enough) plus the Redis exporter's
    read-only reports, and exists only in an environment with a monitoring host."""
    from pixcrawler.exporter import REDIS_ACL_RULES
    from tests.support.role_templates import render

    def users(monitoring: list[str]) -> dict[str, list[str]]:
        acl = render(
            "pixcrawler_redis",
            "users.acl.j2",
            pixcrawler_redis_app_password="app-secret-" + "x" * 16,
            pixcrawler_redis_flower_password="flower-secret-" + "x" * 16,
            pixcrawler_redis_monitor_password="monitor-secret-" + "x" * 16,
            pixcrawler_sentinel_hosts=[],
            pixcrawler_monitoring_hosts=monitoring,
        )
        assert "monitor-secret-" not in acl  # hashes only
        return {
            line.split()[1]: line.split() for line in acl.splitlines() if line.startswith("user ")
        }

    assert "monitor" not in users([])
    monitor = users(["monitoring-1"])["monitor"]
    rules = monitor[4:]  # after "user monitor on #<hash>"
    own = REDIS_ACL_RULES.split()
    assert rules[: len(own)] == own
    assert set(rules[len(own) :]) == REDIS_EXPORTER_EXTRA
    assert not any(word.startswith("+config") for word in rules)  # CONFIG GET shows masterauth


def test_no_registered_result_shadows_a_setting() -> None:
    """A task's `register:` outranks group_vars and role defaults: registering under a
    setting's name silently replaces the setting for the rest of the play (the object
    store's gRPC certificates once turned pixcrawler_objectstore_tls into a dict, which is
    false, and the S3 API stayed plain while its clients expected HTTPS)."""
    settings: set[str] = set()
    for path in [
        *(ANSIBLE_DIR / "group_vars").rglob("*.yml"),
        *ROLES_DIR.glob("*/defaults/main.yml"),
    ]:
        settings |= set(re.findall(r"^(\w+):", path.read_text(), re.M))
    shadowing = {
        f"{path.relative_to(ANSIBLE_DIR)}: {name}"
        for path in ANSIBLE_DIR.rglob("*.yml")
        for name in re.findall(r"^\s+register:\s*(\w+)\s*$", path.read_text(), re.M)
        if name in settings
    }
    assert settings, "no settings found"
    assert not shadowing, sorted(shadowing)
