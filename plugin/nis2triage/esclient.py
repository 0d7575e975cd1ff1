"""Connections to Elasticsearch, built from settings rather than from raw dicts."""

from __future__ import annotations

import codecs
import json
import logging
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from elastic_transport import ConnectionTimeout, TransportError
from elasticsearch import ApiError, Elasticsearch
from elasticsearch.serializer import JsonSerializer, NdjsonSerializer

from nis2triage.errors import ConnectionSetupError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ESSettings:
    """Where Elasticsearch is and how to authenticate; secrets are values, never logged."""

    hosts: tuple[str, ...]
    username: str | None = None
    password: str | None = None
    api_key: str | None = None
    ca_file: str | None = None
    verify_certs: bool = True
    request_timeout: float = 30.0

    def __repr__(self) -> str:
        # Keeps the password and API key out of tracebacks and log lines.
        return f"ESSettings(hosts={self.hosts!r}, username={self.username!r})"


class _FiniteNumbers:
    """JSON for Elasticsearch, which refuses NaN and the infinities anywhere in a document.

    One value past the largest double in an event (a metric's sum of 1.7e308s) reached an
    alert's score as Infinity: the node then refused the alert, its dead-letter copy too,
    and the agent stopped at every start. Such values are written as the largest finite
    double of their sign, and NaN as null; documents without one cost nothing more.
    """

    said = False

    def json_dumps(self, data: Any) -> bytes:
        try:
            text = json.dumps(
                data,
                default=self.default,  # type: ignore[attr-defined]
                ensure_ascii=False,
                separators=(",", ":"),
                allow_nan=False,
            )
        except ValueError as exc:
            if "Out of range float" not in str(exc):
                raise
            text = json.dumps(
                finite(data),
                default=self.default,  # type: ignore[attr-defined]
                ensure_ascii=False,
                separators=(",", ":"),
            )
            if not _FiniteNumbers.said:
                _FiniteNumbers.said = True
                log.warning(
                    "a document held NaN or an infinite number, which Elasticsearch refuses: "
                    "written as null or the largest finite number (said once)"
                )
        return text.encode("utf-8", "surrogatepass")


class _FastDecoding:
    """JSON answers decoded by msgspec, and by the standard library where msgspec refuses.

    Decoding the pages was the largest single cost of reading (`make bench`: 2.1 ms for
    a page of 1,000 events against 1.1 ms with msgspec, on an idle machine). msgspec keeps
    integers of any size exact (orjson makes those past 64 bits floats, silently) and
    refuses what it cannot hold the way `json` does: NaN, numbers past the largest
    double, lone surrogates in strings. A document may carry those in its source, so
    the standard library then decodes the whole answer, as before.
    """

    _decoder = msgspec.json.Decoder()
    said = False

    def json_loads(self, data: bytes) -> Any:
        try:
            return self._decoder.decode(data)
        except msgspec.DecodeError:
            pass
        try:
            return json.loads(data)
        except UnicodeDecodeError:
            # The node keeps a document's bytes as they came and takes some that are no
            # UTF-8 (C0 AF, an overlong "/"); sent back whole, they failed every page that
            # held them, a poll after another, as if the node could not be reached.
            text = data.decode("utf-8", _LENIENT)
        if not _FastDecoding.said:
            _FastDecoding.said = True
            log.warning(
                "an answer from Elasticsearch held bytes that are no UTF-8 (a document "
                "stored as its shipper sent it): read with U+FFFD in their place (said once)"
            )
        return json.loads(text)


def _surrogate_or_replacement(error: UnicodeError) -> tuple[str, int]:
    """`json.loads`'s decoding of bytes (a surrogate encoded alone is kept), and U+FFFD for
    each byte that is no UTF-8 at all, where `json.loads` raised."""
    if not isinstance(error, UnicodeDecodeError):
        raise error
    encoded = error.object[error.start : error.start + 3]
    try:
        return bytes(encoded).decode("utf-8", "surrogatepass"), error.start + 3
    except UnicodeDecodeError:
        return "\ufffd", error.end


_LENIENT = "nis2triage-surrogate-or-replacement"
codecs.register_error(_LENIENT, _surrogate_or_replacement)


class _FiniteJson(_FastDecoding, _FiniteNumbers, JsonSerializer):
    pass


class _FiniteNdjson(_FiniteNumbers, NdjsonSerializer):
    pass


def finite(value: Any) -> Any:
    """`value` with every NaN made None and every infinity the largest float of its sign."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else math.copysign(sys.float_info.max, value)
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def connect(settings: ESSettings) -> Elasticsearch:
    auth: dict[str, object] = {}
    if settings.api_key:
        auth["api_key"] = settings.api_key
    elif settings.username:
        auth["basic_auth"] = (settings.username, settings.password or "")
    if settings.ca_file:
        auth["ca_certs"] = settings.ca_file
    return Elasticsearch(
        list(settings.hosts),
        verify_certs=settings.verify_certs,
        request_timeout=settings.request_timeout,
        retry_on_timeout=True,
        max_retries=3,
        # The client would otherwise park a failed node for up to 30 s and sleep through
        # it; the agent does its own backoff and wants to see the node back at once.
        max_dead_node_backoff=2.0,
        serializers={
            JsonSerializer.mimetype: _FiniteJson(),
            NdjsonSerializer.mimetype: _FiniteNdjson(),
        },
        **auth,  # type: ignore[arg-type]
    )


def dev_settings() -> ESSettings:
    """Settings for the development node: `NIS2TRIAGE_ES_*` variables, else the local node."""
    url = os.environ.get("NIS2TRIAGE_ES_URL")
    if url:
        password = os.environ.get("NIS2TRIAGE_ES_PASSWORD")
        pw_file = os.environ.get("NIS2TRIAGE_ES_PASSWORD_FILE")
        if password is None and pw_file:
            password = Path(pw_file).read_text().strip()
        return ESSettings(
            hosts=(url,),
            username=os.environ.get("NIS2TRIAGE_ES_USER", "elastic"),
            password=password,
            api_key=os.environ.get("NIS2TRIAGE_ES_API_KEY"),
            ca_file=os.environ.get("NIS2TRIAGE_ES_CA"),
        )
    from nis2triage import localnode

    node = localnode.running()
    if node is None:
        raise ConnectionSetupError(
            "no Elasticsearch given: set NIS2TRIAGE_ES_URL, or start the local node "
            "with 'deploy/es-local start'"
        )
    return ESSettings(hosts=(node.url,), username=node.user, password=node.password)


@dataclass(frozen=True)
class ClusterInfo:
    name: str
    version: str


def cluster_info(client: Elasticsearch, credential: str | None = None) -> ClusterInfo:
    """Name and version of the cluster.

    Uses the nodes API rather than `GET /`: the integration-test distribution
    of Elasticsearch does not serve the root endpoint. `credential` says where the
    credential came from, for the error if the node refuses it.
    """
    try:
        nodes = client.nodes.info(node_id="_local", metric="settings").body
    except ApiError as exc:
        raise ConnectionSetupError(_refusal(exc, credential)) from exc
    except TransportError as exc:
        raise ConnectionSetupError(unreached(exc)) from exc
    node = next(iter(nodes["nodes"].values()))
    return ClusterInfo(name=str(nodes["cluster_name"]), version=str(node["version"]))


def _refusal(exc: ApiError, credential: str | None) -> str:
    if exc.meta.status == 401:
        node = _address(exc.meta.node)
        said = credential or "the agent's credential"
        return (
            f"{node} refused {said} (401: {exc.message}): check that value, and the "
            "elasticsearch.username, *_env and *_file the configuration names; "
            "`nis2triage setup --create-api-key` makes the agent a new API key"
        )
    if exc.meta.status == 403:
        return (
            f"the agent's credential may not read the node's information (403: {exc.message}): "
            "its role needs the `monitor` cluster privilege; `nis2triage setup` makes that role"
        )
    return f"Elasticsearch answered the nodes API with an error: {exc}"


def _address(node: Any) -> str:
    """The node an answer came from, as a URL, or "Elasticsearch" when it is not known."""
    try:
        return f"{node.scheme}://{node.host}:{node.port}"
    except AttributeError:
        return "Elasticsearch"


def unreached(exc: TransportError) -> str:
    """Why the node could not be reached, and what to check: every command says this."""
    text = str(exc.message)  # str(exc) is only the kind of error ("TLS error")
    if isinstance(exc, ConnectionTimeout):
        # The node took the connection but not the answer: a wrong address is not the cause.
        return (
            f"Elasticsearch did not answer in time ({text}): check that the cluster is not "
            "overloaded, or raise elasticsearch.request_timeout in the configuration file"
        )
    if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text:
        return (
            f"could not speak TLS with Elasticsearch ({text}): the node may serve plain "
            "HTTP; use an http:// host, or enable TLS on the node"
        )
    return (
        f"Elasticsearch could not be reached: {text}: check elasticsearch.hosts in the "
        "configuration file and that the cluster is up"
    )
