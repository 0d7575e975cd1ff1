"""Keyed pseudonyms for addresses, user names and host names in anything leaving the
organisation.

GDPR Art. 5(1)(c) (data minimisation): the CCB needs to know that an account,
address or machine was involved, not which person it belongs to (a laptop is
often named after its user). A pseudonym is an
HMAC of the value under the entity's own key, so the entity (and only it) can
map it back through the lookup table it keeps in its own index.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from nis2triage.records import stable_id
from nis2triage.store import Store

# Candidate IPv4 and IPv6 literals; each candidate is confirmed by `ipaddress`.
# A full stop may end the sentence after an address ("from 203.0.113.7."), so only a
# full stop followed by a digit continues it.
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?!\d|\.\d)")
# Identifiers derived from an entity by a plain hash: a dictionary attack would undo
# them, so anything leaving the organisation carries a keyed version instead. The
# incident's becomes `incident-<hmac>`; the incidents command takes it as well as the
# local id, through the lookup table (`reveal`).
ID_KINDS = {"alert_id": "ref", "alert_ids": "ref", "reference": "ref", "incident_id": "incident"}
_IPV6 = re.compile(r"(?<![0-9A-Za-z:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Za-z:])")


class Pseudonymiser:
    def __init__(self, key: bytes) -> None:
        self.key = key
        self.table: dict[str, str] = {}

    def pseudonym(self, value: str, kind: str) -> str:
        digest = hmac.new(self.key, f"{kind}\0{value}".encode(), hashlib.sha256).hexdigest()
        name = f"{kind}-{digest[:16]}"
        self.table[name] = value
        return name

    def scrub(self, payload: Any, users: Iterable[str] = (), hosts: Iterable[str] = ()) -> Any:
        """A copy of `payload` with every address and every listed user and host name
        replaced."""
        kinds = {h: "host" for h in hosts if h} | {u: "user" for u in users if u}
        # Longest first, so that `web01.corp` is replaced whole before a name inside it.
        names = sorted(kinds.items(), key=lambda item: len(item[0]), reverse=True)
        return self._walk(payload, names)

    def _walk(self, value: Any, names: list[tuple[str, str]]) -> Any:
        if isinstance(value, str):
            return self._text(value, names)
        if isinstance(value, dict):
            return {
                k: self._id(v, ID_KINDS[k]) if k in ID_KINDS else self._walk(v, names)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self._walk(v, names) for v in value]
        return value

    def _id(self, value: Any, kind: str) -> Any:
        if isinstance(value, list):
            return [self._id(v, kind) for v in value]
        return self.pseudonym(value, kind) if isinstance(value, str) else value

    def _text(self, text: str, names: list[tuple[str, str]]) -> str:
        for name, kind in names:
            if text == name:
                return self.pseudonym(text, kind)
        text = _IPV4.sub(lambda m: self._address(m.group(0)), text)
        text = _IPV6.sub(lambda m: self._address(m.group(0)), text)
        for name, kind in names:
            # Whole words only: a user called "a" must not eat every letter a.
            pattern = rf"(?<![\w.-]){re.escape(name)}(?![\w-]|\.[\w-])"
            text = re.sub(pattern, self.pseudonym(name, kind), text)
        return text

    def _address(self, candidate: str) -> str:
        try:
            ipaddress.ip_address(candidate)
        except ValueError:
            return candidate
        return self.pseudonym(candidate, "ip")


def reveal(store: Store, name: str, kind: str) -> str | None:
    """The value behind pseudonym `name` of `kind`, from the entity's own lookup table."""
    if not name.startswith(f"{kind}-"):
        return None
    entry = store.get("pseudonyms", name)
    return str(entry["value"]) if entry and entry.get("kind") == kind else None


def keyed_id(key: bytes | None, *parts: object) -> str:
    """`stable_id(*parts)`, keyed with HMAC-SHA256 when there is a key: an id that leaves
    the organisation (an idempotency key, a Message-ID) then says nothing to a dictionary."""
    plain = stable_id(*parts)
    if key is None:
        return plain
    return hmac.new(key, plain.encode(), hashlib.sha256).hexdigest()[:32]
