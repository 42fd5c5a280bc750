"""Render a role's templates for tests that run the same files outside Ansible.

The integration tests start redis-server with the ACL file and broker profile the
pixcrawler_redis role installs, rendered from the role's own templates with the role's
own defaults, so a change to either is what the tests run. Only what a test host must
differ in (addresses, ports, paths) is overridden, by name.
"""

from __future__ import annotations

import hashlib
from typing import Any

import jinja2
import jinja2.meta
import yaml  # type: ignore[import-untyped]

from tests.support.paths import REPO

ROLES = REPO / "ansible" / "roles"
SHARED_VARS_DIR = REPO / "ansible" / "group_vars" / "all"


def _hash(value: Any, algorithm: str = "sha1") -> str:
    """Ansible's ``hash`` filter."""
    return hashlib.new(algorithm, str(value).encode()).hexdigest()


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(  # noqa: S701 - config files, not HTML
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )
    env.filters["hash"] = _hash
    return env


def shared_vars() -> dict[str, Any]:
    """Every file of ansible/group_vars/all (shared settings and the fixed facts)."""
    out: dict[str, Any] = {}
    for path in sorted(SHARED_VARS_DIR.glob("*.yml")):
        out.update(yaml.safe_load(path.read_text()) or {})
    return out


def role_vars(role: str, **overrides: Any) -> dict[str, Any]:
    """The shared group_vars and *role*'s defaults, then *overrides*, templates resolved.

    A default that refers to inventory state (hostvars, groups) cannot be resolved
    outside a play and stays unrendered; a template that uses one fails loudly
    (StrictUndefined) rather than rendering something an operator never gets.
    """
    env = _environment()
    values: dict[str, Any] = {
        **shared_vars(),
        **yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text()),
        "ansible_managed": "rendered by the tests from the role's template",
        **overrides,
    }
    for _ in range(3):  # defaults may refer to defaults
        for key, value in values.items():
            if key in overrides or not isinstance(value, str) or "{{" not in value:
                continue
            # A value built on one that is still a template would be built on its text.
            try:
                names = jinja2.meta.find_undeclared_variables(env.parse(value))
                if any(isinstance(values.get(n), str) and "{{" in values[n] for n in names):
                    continue
                text = env.from_string(value).render(values)
            except jinja2.TemplateError:  # Ansible-only filters, inventory state
                continue
            if "{{" not in text:  # Ansible, too, turns "6379" into a number
                values[key] = yaml.safe_load(text) if text.strip() else ""
    return values


def render(role: str, template: str, **overrides: Any) -> str:
    source = (ROLES / role / "templates" / template).read_text()
    return _environment().from_string(source).render(role_vars(role, **overrides))
