"""Signed model snapshots: pickled River state that is never unpickled unverified.

Pickle runs code when loaded, so a snapshot is only unpickled after its HMAC
(SHA-256, key from the environment) matches. An unsigned, tampered or
foreign-key snapshot is refused with SnapshotError.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import pickle
from typing import Any

from nis2triage.errors import ConfigError, SnapshotError

FORMAT = 1
MIN_KEY_BYTES = 16


class SnapshotTooLarge(SnapshotError):
    """A source's checkpoint is larger than Elasticsearch accepts in one request: it can
    never be saved as it stands, so retrying would replay the source for ever."""


def key_from_env(name: str) -> bytes:
    value = os.environ.get(name, "")
    if len(value.encode()) < MIN_KEY_BYTES:
        raise ConfigError(
            f"environment variable {name} must hold the snapshot signing key "
            f"(at least {MIN_KEY_BYTES} bytes); create one with: openssl rand -hex 32"
        )
    return value.encode()


def seal(state: Any, key: bytes) -> dict[str, Any]:
    blob = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    return {
        "format": FORMAT,
        "sig": hmac.new(key, blob, hashlib.sha256).hexdigest(),
        "blob": base64.b64encode(blob).decode("ascii"),
    }


def sealed_size(state: Any) -> int:
    """Bytes `state` takes in a sealed snapshot (pickled, then base64): for saying which
    part of a checkpoint is the large one."""
    return (len(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)) + 2) // 3 * 4


def unseal(sealed: dict[str, Any] | None, key: bytes) -> Any:
    """The state inside `sealed`, after its signature checks out."""
    if not isinstance(sealed, dict) or "sig" not in sealed or "blob" not in sealed:
        # A number or a list there (a hand edit, another tool) ended the start in a TypeError.
        raise SnapshotError("model snapshot is not signed; refusing to load it")
    if sealed.get("format") != FORMAT:
        raise SnapshotError(
            f"model snapshot has format {sealed.get('format')!r}, expected {FORMAT}"
        )
    try:
        blob = base64.b64decode(sealed["blob"], validate=True)
    except (ValueError, TypeError) as exc:
        raise SnapshotError("model snapshot is not valid base64; refusing to load it") from exc
    expected = hmac.new(key, blob, hashlib.sha256).hexdigest()
    # As bytes: compare_digest raises TypeError for a str with a letter outside ASCII.
    if not hmac.compare_digest(expected.encode(), str(sealed["sig"]).encode()):
        raise SnapshotError(
            "model snapshot signature does not match: it was changed, or signed with another "
            "key; refusing to load it. Give the agent the snapshot key it had "
            "(NIS2TRIAGE_SNAPSHOT_KEY), or delete the source's state document to let the "
            "detectors learn afresh"
        )
    # Safe only because the signature was verified just above.
    try:
        return pickle.loads(blob)
    except (ImportError, AttributeError, TypeError, ValueError, pickle.UnpicklingError) as exc:
        # Signed by us, but by a version whose classes this one does not have (a rollback),
        # or builds otherwise (a constructor's arguments changed, a library's format).
        raise SnapshotError(
            f"model snapshot was written by another version of nis2triage ({exc}); run that "
            "version, or delete the source's state document to let the detectors learn "
            "afresh"
        ) from exc
