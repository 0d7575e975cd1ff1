"""Reporting deadlines (NIS2 Art. 23(4)) in elapsed hours, months on the Brussels calendar."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from nis2triage.nis2.brussels import BRUSSELS, show
from nis2triage.nis2.clocks import (
    Deadline,
    IntermediateRequest,
    deadlines,
    one_month_after,
    watchdog,
)
from nis2triage.nis2.entity import Entity

MakeEntity = Callable[..., Entity]


def brussels(text: str) -> datetime:
    """'2026-03-28 10:00' on the Brussels wall clock (the first one, if it shows twice)."""
    return datetime.fromisoformat(text).replace(tzinfo=BRUSSELS)


def due(schedule: tuple[Deadline, ...]) -> dict[str, str]:
    return {d.key: show(d.due) for d in schedule}


@pytest.mark.parametrize(
    ("aware", "kind", "early_warning", "notification"),
    [
        pytest.param(
            "2025-06-02 09:15", "cloud", "2025-06-03 09:15 CEST", "2025-06-05 09:15 CEST",
            id="summer",
        ),
        pytest.param(
            "2026-03-28 10:00", None, "2026-03-29 11:00 CEST", "2026-03-31 11:00 CEST",
            id="spring-forward",
        ),
        pytest.param(
            "2026-10-24 10:00", None, "2026-10-25 09:00 CET", "2026-10-27 09:00 CET",
            id="fall-back",
        ),
        pytest.param(
            "2026-03-29 01:30", None, "2026-03-30 02:30 CEST", "2026-04-01 02:30 CEST",
            id="just-before-the-jump",
        ),
        pytest.param(
            "2026-10-25 02:30", None, "2026-10-26 01:30 CET", "2026-10-28 01:30 CET",
            id="in-the-repeated-hour",
        ),
        pytest.param(
            "2026-10-24 10:00", "trust_service", "2026-10-25 09:00 CET", "2026-10-25 09:00 CET",
            id="trust-service-24h",
        ),
    ],
)  # fmt: skip
def test_early_warning_and_notification_count_elapsed_hours(
    make_entity: MakeEntity, aware: str, kind: str | None, early_warning: str, notification: str
) -> None:
    schedule = deadlines(make_entity(kind), brussels(aware))

    shown = due(schedule)

    assert (shown["early_warning"], shown["incident_notification"]) == (early_warning, notification)


def test_hours_are_elapsed_across_the_spring_change(make_entity: MakeEntity) -> None:
    aware = brussels("2026-03-28 10:00")

    schedule = {d.key: d.due for d in deadlines(make_entity(None), aware)}

    assert schedule["incident_notification"] - aware == timedelta(hours=72)


def test_trust_service_provider_outside_its_trust_services_has_72_hours(
    make_entity: MakeEntity,
) -> None:
    schedule = deadlines(
        make_entity("trust_service"), brussels("2025-06-02 09:00"), affects_trust_services=False
    )

    assert due(schedule)["incident_notification"] == "2025-06-05 09:00 CEST"


@pytest.mark.parametrize(
    ("start", "want"),
    [
        pytest.param("2025-01-31 23:30", "2025-02-28 23:30 CET", id="31-jan-clamped"),
        pytest.param("2024-01-31 23:30", "2024-02-29 23:30 CET", id="31-jan-leap-year"),
        pytest.param("2025-01-31 00:30", "2025-02-28 00:30 CET", id="31-jan-still-30-in-utc"),
        pytest.param("2025-06-30 12:00", "2025-07-30 12:00 CEST", id="30-day-month"),
        pytest.param("2025-07-10 12:00", "2025-08-09 12:00 CEST", id="31-day-month-30-days"),
        pytest.param("2025-03-10 10:00", "2025-04-09 10:00 CEST", id="30-wall-days-over-spring"),
        pytest.param("2025-10-10 10:00", "2025-11-09 09:00 CET", id="30x24h-over-autumn"),
    ],
)
def test_one_month_is_the_earliest_reading(start: str, want: str) -> None:
    assert show(one_month_after(brussels(start))) == want


@pytest.mark.parametrize(
    ("kind", "year", "sent", "want"),
    [
        pytest.param("trust_service", 2025, True, "2025-02-28 23:30 CET", id="sent-31-jan"),
        pytest.param("trust_service", 2024, True, "2024-02-29 23:30 CET", id="sent-31-jan-leap"),
        # Not sent: counted from the 72-hour deadline, 3 February 23:30.
        pytest.param("cloud", 2025, False, "2025-03-03 23:30 CET", id="unsent-72h"),
        pytest.param("cloud", 2024, False, "2024-03-03 23:30 CET", id="unsent-72h-leap"),
    ],
)
def test_final_report_after_awareness_at_2330_on_31_january(
    make_entity: MakeEntity, kind: str, year: int, sent: bool, want: str
) -> None:
    aware = brussels(f"{year}-01-31 23:30")

    schedule = deadlines(make_entity(kind), aware, notification_sent_at=aware if sent else None,
                         handled_at=aware + timedelta(days=2))  # fmt: skip

    assert due(schedule)["final_report"] == want


def test_final_report_counts_from_the_notification_actually_sent(make_entity: MakeEntity) -> None:
    aware = brussels("2025-05-05 08:00")
    sent, handled = brussels("2025-05-06 17:00"), brussels("2025-05-20 12:00")

    schedule = deadlines(make_entity(None), aware, notification_sent_at=sent, handled_at=handled)

    assert due(schedule)["final_report"] == "2025-06-05 17:00 CEST"


def test_still_open_means_a_progress_report_and_no_final_date_yet(make_entity: MakeEntity) -> None:
    schedule = deadlines(make_entity(None), brussels("2025-05-05 08:00"))

    assert due(schedule) == {
        "early_warning": "2025-05-06 08:00 CEST",
        "incident_notification": "2025-05-08 08:00 CEST",
        "progress_report": "2025-06-07 08:00 CEST",
    }


def test_handled_after_the_final_date_moves_the_final_report(make_entity: MakeEntity) -> None:
    schedule = deadlines(make_entity(None), brussels("2025-05-05 08:00"),
                         handled_at=brussels("2025-07-31 16:00"))  # fmt: skip

    shown = due(schedule)

    assert (shown["progress_report"], shown["final_report"]) == (
        "2025-06-07 08:00 CEST",
        "2025-08-30 16:00 CEST",
    )


def test_handled_before_the_final_date_means_no_progress_report(make_entity: MakeEntity) -> None:
    schedule = deadlines(make_entity(None), brussels("2025-05-05 08:00"),
                         handled_at=brussels("2025-06-07 08:00"))  # fmt: skip

    assert [d.report for d in schedule] == [
        "early_warning",
        "incident_notification",
        "final_report",
    ]


def test_intermediate_reports_only_when_requested_and_when_asked(make_entity: MakeEntity) -> None:
    request = IntermediateRequest("CCB-2025-118", brussels("2025-05-06 10:00"),
                                  brussels("2025-05-07 12:00"))  # fmt: skip

    schedule = deadlines(make_entity(None), brussels("2025-05-05 08:00"), requests=[request])

    assert [(d.key, show(d.due)) for d in schedule][:3] == [
        ("early_warning", "2025-05-06 08:00 CEST"),
        ("intermediate_report:CCB-2025-118", "2025-05-07 12:00 CEST"),
        ("incident_notification", "2025-05-08 08:00 CEST"),
    ]


def test_deadlines_are_stored_in_utc(make_entity: MakeEntity) -> None:
    schedule = deadlines(make_entity(None), brussels("2025-05-05 08:00"))

    assert {d.due.tzinfo for d in schedule} == {UTC}


@pytest.mark.parametrize("field", ["aware_at", "notification_sent_at", "handled_at"])
def test_a_naive_time_is_refused(make_entity: MakeEntity, field: str) -> None:
    aware = brussels("2025-05-05 08:00")
    times = {"aware_at": aware, field: datetime(2025, 5, 6, 8, 0)}

    with pytest.raises(ValueError, match=f"{field} must be timezone-aware"):
        deadlines(make_entity(None), **times)


AWARE = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)  # early warning due 3 June 09:00 UTC


@pytest.mark.parametrize(
    ("now", "delivered", "margin_h", "near", "overdue"),
    [
        pytest.param("2025-06-03T02:59Z", set(), 6, [], [], id="7h-before"),
        pytest.param("2025-06-03T03:00Z", set(), 6, ["early_warning"], [], id="6h-before"),
        pytest.param("2025-06-03T09:00Z", set(), 6, ["early_warning"], [], id="at-the-deadline"),
        pytest.param("2025-06-03T09:01Z", set(), 6, [], ["early_warning"], id="a-minute-late"),
        pytest.param("2025-06-03T09:01Z", {"early_warning"}, 6, [], [], id="delivered"),
        pytest.param("2025-06-03T07:00Z", set(), 1, [], [], id="narrow-margin"),
        pytest.param(
            "2025-06-05T04:00Z", {"early_warning"}, 6, ["incident_notification"], [],
            id="notification-near",
        ),
        pytest.param(
            "2025-06-05T09:30Z", set(), 6, [], ["early_warning", "incident_notification"],
            id="both-late",
        ),
    ],
)  # fmt: skip
def test_watchdog(
    make_entity: MakeEntity,
    now: str,
    delivered: set[str],
    margin_h: int,
    near: list[str],
    overdue: list[str],
) -> None:
    schedule = deadlines(make_entity(None), AWARE)

    watch = watchdog(schedule, delivered, datetime.fromisoformat(now), timedelta(hours=margin_h))

    assert ([d.key for d in watch.near], [d.key for d in watch.overdue]) == (near, overdue)


def test_watchdog_tracks_each_intermediate_request(make_entity: MakeEntity) -> None:
    asked = [IntermediateRequest(ref, AWARE, AWARE + timedelta(hours=2)) for ref in ("R1", "R2")]
    schedule = deadlines(make_entity(None), AWARE, requests=asked)

    watch = watchdog(schedule, {"intermediate_report:R1"}, AWARE + timedelta(hours=3))

    assert [d.key for d in watch.overdue] == ["intermediate_report:R2"]


def test_watchdog_refuses_a_naive_now(make_entity: MakeEntity) -> None:
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        watchdog(deadlines(make_entity(None), AWARE), set(), datetime(2025, 6, 3, 9, 0))


def test_a_deadline_describes_itself_for_the_analyst(make_entity: MakeEntity) -> None:
    schedule = deadlines(make_entity("trust_service"), brussels("2026-10-24 10:00"))

    notification = next(d for d in schedule if d.report == "incident_notification")

    assert notification.describe() == (
        "incident_notification due 2026-10-25 09:00 CET "
        "(awareness + 24 h (trust service provider); NIS2 Art. 23(4)(b))"
    )
