"""Model snapshots are unpickled only when their signature holds."""

from __future__ import annotations

import base64
import hashlib
import hmac
import pickle
from datetime import timedelta

import pytest

from nis2triage import snapshots
from nis2triage.errors import ConfigError, SnapshotError

KEY = b"k" * 32


class Boom:
    def __reduce__(self) -> tuple:
        return (pytest.fail, ("an unverified snapshot was unpickled",))


def test_round_trip() -> None:
    assert snapshots.unseal(snapshots.seal({"a": [1, 2]}, KEY), KEY) == {"a": [1, 2]}


def test_tampered_snapshot_is_refused_without_unpickling() -> None:
    sealed = snapshots.seal({"a": 1}, KEY)
    sealed["blob"] = base64.b64encode(pickle.dumps(Boom())).decode()

    with pytest.raises(SnapshotError, match="signature does not match"):
        snapshots.unseal(sealed, KEY)


@pytest.mark.parametrize(
    "sealed",
    [None, {}, {"format": 1, "blob": base64.b64encode(pickle.dumps(Boom())).decode()}],
    ids=["none", "empty", "no-signature"],
)
def test_unsigned_snapshot_is_refused(sealed: dict | None) -> None:
    with pytest.raises(SnapshotError, match="not signed"):
        snapshots.unseal(sealed, KEY)


def test_other_key_is_refused() -> None:
    with pytest.raises(SnapshotError, match="another key"):
        snapshots.unseal(snapshots.seal([1], KEY), b"o" * 32)


def test_a_short_key_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SNAPKEY", "short")

    with pytest.raises(ConfigError, match="openssl rand"):
        snapshots.key_from_env("SNAPKEY")


def signed(blob: bytes) -> dict[str, object]:
    """A sealed snapshot of `blob`, signed with the test key as the agent signs one."""
    return {
        "format": snapshots.FORMAT,
        "sig": hmac.new(KEY, blob, hashlib.sha256).hexdigest(),
        "blob": base64.b64encode(blob).decode("ascii"),
    }


def test_a_snapshot_of_classes_this_version_lacks_says_so() -> None:
    # What a rollback meets: signed by us, naming a module an older version does not have.
    sealed = signed(b"cnis2triage.models.not_in_this_version\nModel\n.")

    with pytest.raises(SnapshotError, match=r"another version of nis2triage.*state document"):
        snapshots.unseal(sealed, KEY)


@pytest.mark.parametrize(
    "sealed",
    [5, True, ["sig", "blob"], {"format": 1, "sig": "é" * 64, "blob": "AAAA"}],
)
def test_a_snapshot_of_the_wrong_shape_is_refused_not_a_crash(sealed: object) -> None:
    # Written by hand or by another tool: a number there ended the start in a TypeError's
    # traceback, as did a signature with a letter outside ASCII.
    with pytest.raises(SnapshotError, match="refusing to load it"):
        snapshots.unseal(sealed, KEY)  # type: ignore[arg-type]


class _BuiltOtherwise:
    """What another version's class may meet when loaded here: arguments its constructor
    no longer takes (the call raises TypeError while unpickling)."""

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (timedelta, ("a field this version reads otherwise",))


def test_a_snapshot_this_version_cannot_rebuild_says_so() -> None:
    sealed = signed(pickle.dumps(_BuiltOtherwise()))

    with pytest.raises(SnapshotError, match=r"another version of nis2triage.*state document"):
        snapshots.unseal(sealed, KEY)
