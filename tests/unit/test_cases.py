"""Cases without servers: the ``cases`` section of the configuration, who sees a case, and the
pure decisions every change of a case goes through (conversations/cases.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from conversations import cases as c
from shared.config import ConfigError, HotlineConfig, load_config
from tests.unit.test_config import _example, _write

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

# --- configuration ---------------------------------------------------------------------------


def test_the_example_configures_the_three_kinds_and_the_infolines_ten_services(config: HotlineConfig) -> None:
    cases = config.cases
    assert set(cases.kinds) == {"crisis_abroad", "presumed_trafficking", "high_risk_dv"}
    assert set(cases.referral_roles) == {"social_worker", "infoline_manager", "lawyer", "psychologist"}
    assert len(cases.assistance_kinds) == 10
    assert set(cases.assistance_of("lastrada")) == set(cases.assistance_kinds)
    assert set(cases.assistance_of("gp")) < set(cases.assistance_kinds)
    crisis = cases.kinds["crisis_abroad"]
    assert crisis.lines == ["113"] and crisis.referral.role == "social_worker" and crisis.referral.hours > 0
    assert set(crisis.intake) == {
        "country",
        "since",
        "documents",
        "safe_contact",
        "urgent_needs",
        "risk_level",
    }
    assert crisis.intake["safe_contact"].type == "text" and crisis.intake["urgent_needs"].multiple
    # Every label a person reads has the three languages.
    for kind in cases.kinds.values():
        for field in kind.intake.values():
            assert {"ru", "be", "en"} <= set(field.label)
            assert all({"ru", "be", "en"} <= set(o) for o in field.options.values())
    assert set(cases.kinds_of(["dv"])) == {"high_risk_dv"}
    assert cases.free_text_fields("crisis_abroad") == ["safe_contact"]
    # External referrals name directory entries by id.
    assert config.directory_entry("police") is not None and config.directory_entry("crisis_room_brest")


def test_intake_answers_are_checked_and_kept_as_codes_dates_and_text(config: HotlineConfig) -> None:
    kept, missing, invalid = config.cases.check_intake(
        "crisis_abroad",
        {
            "country": "PL",
            "since": "2026-11-03",
            "safe_contact": "  only by text, after 21:00  ",
            "urgent_needs": ["shelter", "money", "shelter"],
            "documents": "",
        },
    )
    assert kept == {
        "country": "PL",
        "since": "2026-11-03",
        "safe_contact": "only by text, after 21:00",
        "urgent_needs": ["money", "shelter"],
    }
    assert missing == ["risk_level"] and invalid == []
    _, missing, invalid = config.cases.check_intake(
        "crisis_abroad",
        {
            "country": "Atlantis",
            "since": "yesterday",
            "urgent_needs": "shelter",
            "risk_level": "high",
            "x": 1,
        },
    )
    assert invalid == ["country", "since", "urgent_needs", "x"] and missing == []
    _, _, invalid = config.cases.check_intake(
        "crisis_abroad", {"risk_level": "high", "country": "PL", "safe_contact": "x" * 1001}
    )
    assert invalid == ["safe_contact"]


def _crisis(cases: dict[str, Any]) -> dict[str, Any]:
    kind: dict[str, Any] = cases["kinds"]["crisis_abroad"]
    return kind


def _bad(tmp_path: Path, change: Any, named: str) -> None:
    data = _example()
    change(data["cases"])
    with pytest.raises(ConfigError, match=named):
        load_config(_write(tmp_path, data))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda d: _crisis(d).update(lines=["999"]), r"kinds\.crisis_abroad\.lines: unknown line"),
        (lambda d: _crisis(d)["referral"].update(role="boss"), r"referral\.role: unknown role 'boss'"),
        (lambda d: _crisis(d)["referral"].update(hours=0), r"referral\.hours"),
        (lambda d: _crisis(d)["required"].append("age"), r"required: no intake field 'age'"),
        (lambda d: _crisis(d)["intake"]["since"].update(options={"a": {"en": "A"}}), r"no options"),
        (lambda d: _crisis(d)["intake"]["country"].update(options={}), r"a choice needs options"),
        (lambda d: d["referral_roles"].update({"Boss!": {"en": "Boss"}}), r"'Boss!' is not an id"),
        (lambda d: d["referral_roles"]["lawyer"].pop("be"), r"referral_roles\.lawyer: no name in be"),
        (lambda d: d["assistance"].update(nobody=["shelter"]), r"cases\.assistance: unknown organisation"),
        (lambda d: d["assistance"].update(gp=["teleport"]), r"assistance\.gp: unknown assistance kind"),
        (lambda d: d["assistance_kinds"]["shelter"].update(price=1), r"assistance_kinds\.shelter\.price"),
        (lambda d: d.update(close_reasons={}), r"cases\.close_reasons"),
    ],
)  # fmt: skip
def test_a_bad_cases_section_is_refused_naming_the_key(tmp_path: Path, change: Any, named: str) -> None:
    _bad(tmp_path, change, named)


def test_directory_ids_are_unique(tmp_path: Path) -> None:
    data = _example()
    data["directory"]["emergency"][1]["id"] = "police"
    with pytest.raises(ConfigError, match=r"directory: ids used twice: \['police'\]"):
        load_config(_write(tmp_path, data))


def test_a_file_without_cases_still_loads(tmp_path: Path) -> None:
    data = _example()
    del data["cases"]
    assert load_config(_write(tmp_path, data)).cases.kinds == {}


# --- who sees a case -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "organisation", "lines", "sees"),
    [
        ("specialist", "lastrada", ["113"], {("lastrada", "113")}),
        ("supervisor", "lastrada", ["113"], {("lastrada", "113")}),
        ("admin", "bwc", ["113"], {("bwc", "113")}),
        # A national administrator sees every organisation's there; nobody else of no
        # organisation sees any.
        ("national_admin", None, ["113"], {("lastrada", "113"), ("bwc", "113")}),
        ("national_admin", None, ["dv"], {("gp", "dv"), ("lastrada", "dv")}),
        ("supervisor", None, ["113"], set()),
        ("admin", None, ["dv"], set()),
        # Consultants see no case at all, nor does a specialist of no organisation.
        ("consultant", "lastrada", ["113"], set()),
        ("specialist", None, ["113"], set()),
    ],
)
def test_cases_are_seen_by_their_organisations_specialists_and_supervisors(
    role: str, organisation: str | None, lines: list[str], sees: set[tuple[str, str]]
) -> None:
    viewer = c.case_viewer(role, organisation, lines)
    every = {("lastrada", "113"), ("bwc", "113"), ("gp", "dv"), ("lastrada", "dv")}
    seen = {(o, ln) for o, ln in every if viewer is not None and viewer.sees(o, ln)}
    assert seen == sees
    if viewer is not None:
        query = viewer.filter()
        assert query["line"] == {"$in": sorted(lines)}
        assert query.get("organisation") == organisation


# --- decisions -------------------------------------------------------------------------------


def _case(**fields: Any) -> dict[str, Any]:
    doc = c.new_case(
        number=7,
        organisation="lastrada",
        line="113",
        kind="crisis_abroad",
        intake={"country": "PL", "risk_level": "high"},
        opened_by="anna",
        at=NOW,
        thread_id="t1",
        consultation_id="t1:1",
        client_id=None,
        referral=c.new_referral("social_worker", NOW + timedelta(hours=2), "anna", NOW),
    )
    doc.update(fields)
    return doc


def test_a_new_case_is_open_referred_untaken_and_keyed_by_its_consultation() -> None:
    doc = _case()
    assert doc["status"] == "open" and doc["assignee"] is None and doc["referral"]["taken_by"] is None
    assert doc["open_key"] == "t1:1:crisis_abroad" and doc["v"] == 1
    assert c.case_reference("lastrada", 17) == "LASTRADA-17"
    for name in ("services", "external_referrals", "followups", "notes"):
        assert doc[name] == []


def test_taking_a_referral_needs_its_role_or_a_supervisor_and_happens_once() -> None:
    doc = _case()
    with pytest.raises(c.CaseConflict, match="a role you do not fill"):
        c.take(doc, "lev", ["lawyer"], False, NOW)
    taken = c.take(doc, "sasha", ["social_worker"], False, NOW)
    assert taken["assignee"] == "sasha" and taken["status"] == "active"
    assert taken["referral"]["taken_by"] == "sasha" and taken["referral"]["taken_at"] == NOW
    doc.update(taken)
    assert c.take(doc, "sasha", ["social_worker"], False, NOW) == {}  # a retry
    with pytest.raises(c.CaseConflict, match="someone else"):
        c.take(doc, "sofia", [], True, NOW)
    # Referred anew: nobody holds it until someone of the new role takes it.
    doc.update(c.refer(doc, "lawyer", NOW + timedelta(hours=1), "sasha", NOW))
    assert doc["status"] == "open" and doc["assignee"] is None and doc["referral"]["role"] == "lawyer"
    assert c.take(doc, "sofia", [], True, NOW)["assignee"] == "sofia"


def test_status_moves_and_a_closed_case_takes_no_more_changes() -> None:
    doc = _case()
    with pytest.raises(c.CaseConflict, match="from open to monitoring"):
        c.set_status(doc, "monitoring", None, NOW)
    doc.update(c.take(doc, "sasha", ["social_worker"], False, NOW))
    doc.update(c.set_status(doc, "monitoring", None, NOW))
    assert c.set_status(doc, "monitoring", None, NOW) == {}
    closed = c.set_status(doc, "closed", "resolved", NOW)
    assert closed == {
        "status": "closed",
        "close_reason": "resolved",
        "closed_at": NOW,
        "followup_alert_at": None,
    }
    doc.update(closed)
    for change in (
        lambda: c.set_status(doc, "active", None, NOW),
        lambda: c.append(doc, "notes", c.new_note("x", "sasha", NOW)),
        lambda: c.refer(doc, "lawyer", NOW, "sasha", NOW),
        lambda: c.take(doc, "sasha", ["social_worker"], False, NOW),
    ):
        with pytest.raises(c.CaseConflict, match="closed"):
            change()


def test_follow_ups_keep_the_next_date_and_are_announced_once_when_due() -> None:
    doc = _case()
    later = c.new_followup(NOW + timedelta(days=7), "call back", "sasha", NOW)
    sooner = c.new_followup(NOW + timedelta(days=1), None, "sasha", NOW)
    doc.update(c.append(doc, "followups", later))
    doc.update(c.append(doc, "followups", sooner))
    assert doc["next_followup_at"] == doc["followup_alert_at"] == NOW + timedelta(days=1)
    assert c.followups_now_due(doc, NOW) == ({}, [])
    marked, ids = c.followups_now_due(doc, NOW + timedelta(days=2))
    assert ids == [sooner["id"]]
    doc.update(marked)
    # Announced, still not done: it stays the next one; the alert moves to the later one.
    assert doc["next_followup_at"] == NOW + timedelta(days=1)
    assert doc["followup_alert_at"] == NOW + timedelta(days=7)
    assert c.followups_now_due(doc, NOW + timedelta(days=2)) == ({}, [])
    assert c.overdue(doc, NOW + timedelta(days=2))
    doc.update(c.followup_done(doc, sooner["id"], "sasha", NOW + timedelta(days=2)))
    assert doc["next_followup_at"] == NOW + timedelta(days=7)
    assert c.followup_done(doc, sooner["id"], "sasha", NOW) == {}  # done already
    with pytest.raises(LookupError):
        c.followup_done(doc, "nope", "sasha", NOW)


def test_an_external_referral_gets_its_result() -> None:
    doc = _case()
    ref = c.new_external_referral("police", NOW, "sasha", None, NOW)
    assert ref["result"] is None and ref["result_at"] is None
    doc.update(c.append(doc, "external_referrals", ref))
    doc.update(c.record_result(doc, ref["id"], "statement taken", NOW + timedelta(days=1)))
    assert doc["external_referrals"][0]["result"] == "statement taken"
    assert doc["external_referrals"][0]["result_at"] == NOW + timedelta(days=1)


def test_my_cases_come_overdue_first_then_by_the_nearest_deadline() -> None:
    late_referral = _case(number=1)
    late_referral["referral"]["due_at"] = NOW - timedelta(minutes=5)
    due_followup = _case(number=2, status="active")
    due_followup.update(
        c.append(due_followup, "followups", c.new_followup(NOW - timedelta(days=1), None, "x", NOW))
    )
    soon = _case(number=3)
    soon["referral"]["due_at"] = NOW + timedelta(minutes=30)
    later = _case(number=4)
    quiet = _case(number=5, status="monitoring")
    ordered = sorted([quiet, later, soon, due_followup, late_referral], key=lambda d: c.work_order(d, NOW))
    assert [d["number"] for d in ordered] == [2, 1, 3, 4, 5]
    assert [c.overdue(d, NOW) for d in ordered] == [True, True, False, False, False]
