"""The bench's table: which read limit the end-to-end rate is held against, and its flag."""

from __future__ import annotations

from nis2triage.bench import run


def throughput(e2e_rate: float) -> dict[str, object]:
    return {
        "read_rate": 90_000.0,
        "read_method": "windowed",
        "read_rate_by_method": {"windowed": 90_000.0, "scroll": 85_000.0},
        "e2e_rate": e2e_rate,
        "e2e_seconds": 40.0,
        "rule_seconds": 0.2,
    }


def test_the_ratio_is_to_the_fastest_read_timed() -> None:
    rows = {row.measure: row for row in run.rows({"throughput": throughput(22_500.0)})}

    ratio = rows["end to end / read limit"]
    assert ratio.value == "25.0%"
    assert ratio.met is False
    assert "time windows" in next(m for m in rows if m.startswith("read limit"))


def test_the_ratio_to_the_agents_paging_is_shown_when_scroll_is_faster() -> None:
    t = throughput(24_000.0) | {
        "read_rate": 120_000.0,
        "read_method": "scroll",
        "read_rate_by_method": {"windowed": 80_000.0, "scroll": 120_000.0},
    }
    rows = {row.measure: row for row in run.rows({"throughput": t})}

    assert rows["end to end / read limit"].value == "20.0%"
    assert rows["end to end / the agent's paging alone"].value == "30.0%"


def test_half_the_read_limit_meets_the_target() -> None:
    rows = {row.measure: row for row in run.rows({"throughput": throughput(45_000.0)})}
    assert rows["end to end / read limit"].met is True


def test_a_ratio_just_short_of_the_target_does_not_round_up_to_it() -> None:
    rows = {row.measure: row for row in run.rows({"throughput": throughput(44_775.0)})}

    short = rows["end to end / read limit"]
    assert (short.value, short.met) == ("49.8%", False)


def test_each_rounds_ratio_is_shown_with_their_median() -> None:
    t = throughput(30_000.0) | {"round_ratios": [0.31, 0.42, 0.36]}
    rows = {row.measure: row for row in run.rows({"throughput": t})}

    assert rows["  the same, round by round (median)"].value == "36% (31%, 42%, 36%)"
    # A bench.json of before the rounds has none, and no such row.
    plain = run.rows({"throughput": throughput(30_000.0)})
    assert not any("round by round" in row.measure for row in plain)


def test_only_the_read_methods_asked_for_are_timed() -> None:
    args = run._parser().parse_args(["--read", "windowed", "--read", "scroll"])
    assert args.read == ["windowed", "scroll"]
    assert run._parser().parse_args([]).read is None


def latency(from_indexed: list[float]) -> dict[str, object]:
    return {
        "bursts": len(from_indexed),
        "detected": len(from_indexed),
        "from_indexed": from_indexed,
        "from_closable": [max(0.0, t - 2.5) for t in from_indexed],
    }


def test_latency_is_judged_from_indexing_the_burst() -> None:
    fast = {row.measure: row for row in run.rows({"latency": latency([2.6] * 19 + [2.9])})}
    slow = {row.measure: row for row in run.rows({"latency": latency([2.6] * 18 + [3.5] * 2)})}

    assert fast["latency from indexing, median / p95, s"].met is True
    assert slow["latency from indexing, median / p95, s"].met is False
    assert slow["latency from bucket closable, median / p95, s"].met is None


def elastalert(failure: str) -> dict[str, object]:
    ea = {"version": "2.31.0", "seconds": 6.0, "unmodified_failure": failure}
    return {"elastalert": ea, "throughput": throughput(40_000.0)}


def test_elastalerts_own_failure_on_this_node_is_said_in_words_not_cut_mid_word() -> None:
    refused = (
        "Traceback (most recent call last):\n  ...\nelasticsearch.exceptions.TransportError: "
        "TransportError(405, 'Incorrect HTTP method for uri [/] and method [GET], allowed: "
        "[DELETE]')"
    )
    other = "ConnectionError: " + "the node at 127.0.0.1:9 refused the connection " * 3

    known = {row.measure: row.value for row in run.rows(elastalert(refused))}
    unknown = {row.measure: row.value for row in run.rows(elastalert(other))}

    said = "ElastAlert 2 as shipped, on this node"
    assert known[said] == "create-index fails: GET / answers 405 here (bench.json has its error)"
    assert unknown[said].endswith(" ...") and len(unknown[said]) <= 94
    assert other.startswith(unknown[said].removesuffix(" ..."))
    assert not unknown[said].removesuffix(" ...").endswith(" ")
    assert known["ElastAlert 2's one rule / nis2triage's whole pass"] == "0.15x"


def test_each_readers_cpu_is_shown_the_nodes_when_it_was_read() -> None:
    t = throughput(24_000.0) | {
        "read_cpu_by_method": {"windowed": [11.92, 12.74], "scroll": [10.8, None]},
    }
    rows = {row.measure: row.value for row in run.rows({"throughput": t})}

    paging = next(m for m in rows if m.startswith("  CPU of the read") and "windows" in m)
    assert rows[paging] == "11.9 / 12.7"
    scroll = next(m for m in rows if m.startswith("  CPU of the read") and "scroll" in m)
    assert rows[scroll] == "10.8 / not read"


def test_the_detectors_run_apart_are_named_in_the_end_to_end_row() -> None:
    t = throughput(24_000.0) | {"e2e_processes": ["auth-volume-per-user", "ssh-brute-force"]}

    rows = [row.measure for row in run.rows({"throughput": t})]

    assert (
        "end to end (agent + frequency rule; auth-volume-per-user, ssh-brute-force each in a "
        "process of its own), events/s"
    ) in rows
