from pathlib import Path

import pytest
import yaml

from shared.config import ConfigError, load_config
from shared.settings import DEFAULT_CONFIG_PATH


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "hotline.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def _example() -> dict:
    return yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())


def test_example_models_both_hotlines(config):
    assert set(config.lines) == {"113", "dv"}
    assert set(config.organisations) == {"lastrada", "bwc", "gp"}
    assert {"ru", "be", "en"} <= set(config.languages)


def test_queue_of_unknown_organisation_is_named(tmp_path):
    data = _example()
    data["queues"]["gp-dv"]["organisations"] = ["nobody"]
    with pytest.raises(ConfigError, match=r"queues\.gp-dv\.organisations: unknown organisation 'nobody'"):
        load_config(_write(tmp_path, data))


def test_region_mapped_to_unknown_queue_is_named(tmp_path):
    data = _example()
    data["lines"]["113"]["region_queues"]["brest"] = "missing"
    with pytest.raises(ConfigError, match=r"region_queues\.brest: unknown queue 'missing'"):
        load_config(_write(tmp_path, data))


def test_misspelt_key_is_refused_not_ignored(tmp_path):
    data = _example()
    data["lines"]["dv"]["defualt_queue"] = data["lines"]["dv"].pop("default_queue")
    with pytest.raises(ConfigError, match=r"lines\.dv\.defualt_queue"):
        load_config(_write(tmp_path, data))


def test_broken_yaml_names_the_file(tmp_path):
    path = tmp_path / "hotline.yaml"
    path.write_text("lines: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_a_key_given_twice_is_refused_not_overwritten(tmp_path):
    text = DEFAULT_CONFIG_PATH.read_text(encoding="utf-8")
    topic = "      safe_travel: {title: {ru: Безопасный выезд, be: Бяспечны выезд, "
    topic += "en: Safe travel and migration}}\n"
    assert topic in text
    path = tmp_path / "hotline.yaml"
    path.write_text(text.replace(topic, topic + topic.replace("Safe travel", "Travel")), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"not valid YAML.*'safe_travel' is given twice"):
        load_config(path)
    load_config(DEFAULT_CONFIG_PATH)  # the example configuration names each key once


def test_visibility_follows_organisation_and_line(config):
    assert config.queues_visible_to("bwc", ["113"]) == ["113-triage", "bwc-migration"]
    assert config.queues_visible_to("gp", ["dv"]) == ["gp-dv", "gp-legal"]
    assert config.queues_visible_to("gp", ["113"]) == []
