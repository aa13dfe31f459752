"""The documentation names every setting the code reads, so operators never guess."""

from pathlib import Path

import pytest

from services.chat_ingest.settings import ChatIngestSettings
from services.dispatcher.settings import DispatcherSettings
from services.email_ingest.settings import EmailIngestSettings
from services.store.settings import StoreSettings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("cls", [StoreSettings, DispatcherSettings, EmailIngestSettings, ChatIngestSettings])
def test_every_setting_is_documented(cls):
    doc = (ROOT / "docs" / "configuration.md").read_text()
    prefix = cls.model_config["env_prefix"]
    missing = [prefix + name.upper() for name in cls.model_fields if f"`{prefix}{name.upper()}`" not in doc]
    assert missing == []


@pytest.mark.parametrize("cls", [StoreSettings, DispatcherSettings, EmailIngestSettings, ChatIngestSettings])
def test_every_setting_has_a_description(cls):
    assert [n for n, f in cls.model_fields.items() if not f.description] == []


def test_readme_quick_start_is_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    start = readme.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in start.strip().splitlines()] == ["make demo", "make test"]
