"""The node the tests run against is a real Elasticsearch, not a stand-in."""

from __future__ import annotations

import http.server
import socket
import threading
import uuid
from pathlib import Path

import pytest
from elasticsearch import AuthenticationException, Elasticsearch, helpers

from nis2triage import esclient, localnode
from nis2triage.errors import ConnectionSetupError


def test_node_reports_its_version(es: Elasticsearch) -> None:
    info = esclient.cluster_info(es)

    assert info.version.split(".")[0] in {"8", "9"}
    assert es.cluster.health().body["status"] in {"green", "yellow"}


def test_bulk_index_count_range_and_terms(es: Elasticsearch, index_name: str) -> None:
    docs = (
        {"_index": index_name, "_id": str(i), "n": i, "host": f"h{i % 7}"} for i in range(10_000)
    )
    indexed, errors = helpers.bulk(es, docs, chunk_size=2_000)
    es.indices.refresh(index=index_name)

    assert (indexed, errors) == (10_000, [])
    assert es.count(index=index_name)["count"] == 10_000
    ranged = es.search(index=index_name, query={"range": {"n": {"gte": 100, "lt": 250}}}, size=0)
    assert ranged["hits"]["total"]["value"] == 150
    aggs = es.search(index=index_name, size=0, aggs={"h": {"terms": {"field": "host.keyword"}}})
    counts = {b["key"]: b["doc_count"] for b in aggs["aggregations"]["h"]["buckets"]}
    assert counts["h0"] == len(range(0, 10_000, 7))
    assert sum(counts.values()) == 10_000


def test_wrong_password_is_refused(es_settings: esclient.ESSettings) -> None:
    wrong = esclient.ESSettings(hosts=es_settings.hosts, username="elastic", password="not-it")
    client = esclient.connect(wrong)

    with pytest.raises(AuthenticationException) as refused:
        client.cluster.health()
    assert refused.value.meta.status == 401


def test_a_refused_credential_is_named_as_such_with_where_to_look(
    es_settings: esclient.ESSettings,
) -> None:
    wrong = esclient.ESSettings(hosts=es_settings.hosts, username="elastic", password="not-it")

    with pytest.raises(ConnectionSetupError, match=r"refused the agent's credential \(401"):
        esclient.cluster_info(esclient.connect(wrong))
    # With where the credential came from, the error names it, and the node.
    with pytest.raises(ConnectionSetupError) as refused:
        esclient.cluster_info(esclient.connect(wrong), "the API key in $NIS2TRIAGE_ES_API_KEY")
    said = str(refused.value)
    assert said.startswith(f"{es_settings.hosts[0]} refused the API key in $NIS2TRIAGE_ES_API_KEY")
    assert "nis2triage setup --create-api-key" in said


class Quiet(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_tls_spoken_to_a_plain_http_server_says_so() -> None:
    # A plain-HTTP server on loopback stands for a node without TLS.
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        tls = esclient.ESSettings(hosts=(f"https://127.0.0.1:{port}",), request_timeout=5.0)
        client = esclient.connect(tls).options(max_retries=0)

        with pytest.raises(ConnectionSetupError, match=r"may serve plain HTTP; use an http://"):
            esclient.cluster_info(client)
    finally:
        server.shutdown()
        server.server_close()


def test_a_node_nobody_listens_on_says_where_to_look() -> None:
    with socket.socket() as probe:  # a loopback port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = esclient.ESSettings(hosts=(f"http://127.0.0.1:{port}",), request_timeout=5.0)

    with pytest.raises(ConnectionSetupError, match=r"could not be reached: .*Connection refused.*: "
                       r"check elasticsearch.hosts in the configuration file and that the "
                       r"cluster is up$"):  # fmt: skip
        esclient.cluster_info(esclient.connect(settings).options(max_retries=0))


def test_settings_repr_hides_the_password() -> None:
    settings = esclient.ESSettings(hosts=("http://x",), username="u", password="s3cret-pw")

    assert "s3cret-pw" not in repr(settings)


def test_the_security_index_analyzer_splits_an_address_as_elasticsearch_does(
    es: Elasticsearch,
) -> None:
    # The components the local node gets from deploy/es-analysis (a full cluster has them
    # from analysis-common): the security index cannot be created without them.
    analysed = es.indices.analyze(
        tokenizer="uax_url_email",
        filter=[
            {
                "type": "pattern_capture",
                "preserve_original": True,
                "patterns": ["([^@]+)", "@(.+)"],
            },
            "lowercase",
            "unique",
        ],
        text="Bob.Smith@Example.ORG bob.smith@example.org",
    ).body

    tokens = [(t["token"], t["position"]) for t in analysed["tokens"]]
    assert tokens == [
        ("bob.smith@example.org", 0),
        ("bob.smith", 0),
        ("example.org", 0),
        ("bob.smith@example.org", 1),
        ("bob.smith", 1),
        ("example.org", 1),
    ]


def test_the_security_index_stores_a_native_role(es: Elasticsearch) -> None:
    name = f"t_native_role_{uuid.uuid4().hex[:8]}"
    es.security.put_role(name=name, cluster=["monitor"])

    try:
        assert es.security.get_role(name=name).body[name]["cluster"] == ["monitor"]
    finally:
        es.security.delete_role(name=name)


def test_the_password_waits_until_the_launched_node_says_it_holds_the_port(
    tmp_path: Path,
) -> None:
    # An earlier launch's line, then this launch's: only what follows `offset` counts.
    console = tmp_path / "console.log"
    before = "[..][INFO ][o.e.h.AbstractHttpServerTransport] bound_addresses {127.0.0.1:9200}\n"
    console.write_text(before)
    offset = console.stat().st_size

    assert not localnode.bound_to(console, offset, 9200)
    with console.open("a") as log:
        log.write(before.replace("9200", "9201"))
    assert localnode.bound_to(console, offset, 9201)
    assert not localnode.bound_to(console, offset, 9200)
