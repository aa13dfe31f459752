from datetime import UTC, datetime

import pytest

from conversations.identity import thread_key
from services.dispatcher.routing import UnknownLine, choose_queue
from shared.envelope import Channel, ChatFacts, InboundMessage

LASTRADA = ["minsk_city", "minsk", "vitebsk", "mogilev"]
BWC = ["brest", "grodno", "gomel"]


@pytest.mark.parametrize("region", LASTRADA)
def test_lastrada_regions(config, region):
    queue = choose_queue(config, "113", region)
    assert config.queues[queue].organisations == ["lastrada"]


@pytest.mark.parametrize("region", BWC)
def test_bwc_regions(config, region):
    queue = choose_queue(config, "113", region)
    assert config.queues[queue].organisations == ["bwc"]


def test_every_region_of_the_infoline_has_its_ngo(config):
    assert sorted(config.lines["113"].region_queues) == sorted(LASTRADA + BWC)


@pytest.mark.parametrize("region", [None, "atlantis"])
def test_unknown_region_goes_to_the_triage_queue_both_ngos_see(config, region):
    queue = choose_queue(config, "113", region)
    assert queue == "113-triage"
    assert set(config.queues[queue].organisations) == {"lastrada", "bwc"}


def test_dv_line_goes_to_gp(config):
    assert config.queues[choose_queue(config, "dv", "brest")].organisations == ["gp"]


def test_unknown_line_is_an_error(config):
    with pytest.raises(UnknownLine):
        choose_queue(config, "999", None)


def _msg(channel: Channel, source: str, session: str | None = None) -> InboundMessage:
    return InboundMessage(
        message_id="m",
        source_id=source,
        channel=channel,
        line="dv",
        received_at=datetime(2026, 1, 1, tzinfo=UTC),
        sender="x",
        text="t",
        chat=ChatFacts(session=session) if session else None,
    )


def test_chat_messages_of_one_session_share_a_thread_key():
    a = _msg(Channel.CHAT, "chat:s1:1", "s1")
    b = _msg(Channel.CHAT, "chat:s1:2", "s1")
    assert thread_key(a) == thread_key(b) == "chat:s1"


def test_each_new_mail_keys_its_own_thread():
    assert thread_key(_msg(Channel.EMAIL, "imap:x:1:1")) != thread_key(_msg(Channel.EMAIL, "imap:x:1:2"))
