import pytest

from shared.config import HotlineConfig, load_config
from shared.settings import DEFAULT_CONFIG_PATH


@pytest.fixture(scope="session")
def config() -> HotlineConfig:
    return load_config(DEFAULT_CONFIG_PATH)
