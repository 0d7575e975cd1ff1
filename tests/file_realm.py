"""File-realm roles and users on the test node, for tests that run as a least-privileged agent.

The node reads `roles.yml`, `users` and `users_roles` from its config folder and
reloads them within about five seconds of a change. Each entry added here is
removed again afterwards; the rest of each file is left as it was.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from elasticsearch import Elasticsearch

from nis2triage import esclient

RELOAD_TIMEOUT_S = 30.0


def config_dir(es: Elasticsearch) -> Path:
    """The config folder of the node `es` talks to (the local node keeps it under its home)."""
    nodes = es.nodes.info(node_id="_local", metric="settings").body["nodes"]
    home = next(iter(nodes.values()))["settings"]["path"]["home"]
    return Path(home) / "config"


def password_hash(password: str) -> str:
    """A salted SHA-256 hash in the `{SSHA256}` form the file realm reads.

    Operators use `bin/elasticsearch-users useradd`, which writes bcrypt; this form
    needs no Java and no extra package, which suits a test.
    """
    salt = os.urandom(8)
    digest = hashlib.sha256(password.encode() + salt).digest()
    return "{SSHA256}" + base64.b64encode(salt).decode() + base64.b64encode(digest).decode()


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    with open(folder / "users", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _append(path: Path, text: str) -> str:
    """Append `text` on a line of its own; return exactly what was written, to remove later."""
    current = path.read_text()
    written = f"\n{text}" if current and not current.endswith("\n") else text
    with open(path, "a") as handle:
        handle.write(written)
    return written


def _remove(path: Path, text: str) -> None:
    # Rewritten in place, so the file keeps the node user's ownership.
    current = path.read_text()
    with open(path, "r+") as handle:
        handle.write(current.replace(text, "", 1))
        handle.truncate()


@contextmanager
def file_realm_user(
    es: Elasticsearch,
    admin: esclient.ESSettings,
    role: str,
    role_yml: str,
    user: str,
    password: str,
) -> Iterator[esclient.ESSettings]:
    """A user holding `role` (defined by `role_yml`); yields settings to connect as it."""
    folder = config_dir(es)
    entries = {
        folder / "roles.yml": f"{role_yml.rstrip()}\n",
        folder / "users": f"{user}:{password_hash(password)}\n",
        folder / "users_roles": f"{role}:{user}\n",
    }
    with _locked(folder):
        written = {path: _append(path, text) for path, text in entries.items()}
    settings = replace(admin, username=user, password=password, api_key=None)
    try:
        _wait_for_role(settings, role)
        yield settings
    finally:
        with _locked(folder):
            for path, text in written.items():
                _remove(path, text)


def _wait_for_role(settings: esclient.ESSettings, role: str) -> None:
    client = esclient.connect(settings)
    deadline = time.monotonic() + RELOAD_TIMEOUT_S
    while time.monotonic() < deadline:
        resp = client.options(ignore_status=(401, 403)).security.get_user_privileges()
        if resp.meta.status == 200 and resp.body.get("indices"):
            client.close()
            return
        time.sleep(0.5)
    client.close()
    raise AssertionError(f"the node did not load file-realm role {role} within 30 s")
