"""The case form of the example configuration: questions per line, validated answers."""

from __future__ import annotations

from shared.config import HotlineConfig


def test_each_line_asks_its_own_questions(config: HotlineConfig) -> None:
    dv, migration = config.case_fields("dv"), config.case_fields("113")
    assert {"perpetrator_gender", "perpetrator_relation", "abuse_kinds", "children_affected"} <= set(dv)
    assert "destination_country" not in dv and "destination_country" in migration
    assert "abuse_kinds" not in migration
    assert set(dv["age_group"]["options"]) >= {"under-18", "18-26", "27-40", "41-59", "60+"}
    # Topics are the line's own; regions come from the configuration.
    assert set(migration["topics"]["options"]) == set(config.lines["113"].topics)
    assert set(dv["region"]["options"]) == set(config.regions)
    assert dv["abuse_kinds"]["multiple"] and not dv["gender"]["multiple"]


def test_answers_are_checked_against_the_options(config: HotlineConfig) -> None:
    case = {
        "client_role": "survivor",
        "gender": "f",
        "age_group": "27-40",
        "abuse_kinds": ["physical", "emotional", "physical"],
        "crisis": "yes",
        "region": "",
    }
    kept, missing, invalid = config.check_case("dv", case)
    assert missing == [] and invalid == []
    # Lists are kept sorted and without repeats; empty answers are dropped.
    assert kept["abuse_kinds"] == ["emotional", "physical"] and "region" not in kept

    kept, missing, invalid = config.check_case(
        "113", {"gender": "woman", "topics": "work_abroad", "abuse_kinds": ["physical"], "hack": 1}
    )
    assert missing == ["client_role", "age_group"]
    # Not an option, a single value where a list is due, a question of another line, an unknown key.
    assert invalid == ["abuse_kinds", "gender", "hack", "topics"]
