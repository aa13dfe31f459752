"""Which address a request is counted against (shared/peers.py, client_address): a failed
log-in in the store, a chat socket or start in chat_ingest."""

import ipaddress

from shared.peers import client_address as login_peer

PROXY = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]


def test_a_trusted_proxy_names_the_clients_address() -> None:
    assert login_peer("10.1.2.3", "203.0.113.9", PROXY) == "203.0.113.9"
    assert login_peer("fd00::1", " 2001:db8::7 ", PROXY) == "2001:db8::7"


def test_anyone_else_is_their_own_peer_whatever_they_write() -> None:
    assert login_peer("198.51.100.7", "203.0.113.9", PROXY) == "198.51.100.7"
    assert login_peer("10.1.2.3", "203.0.113.9", []) == "10.1.2.3"


def test_a_header_that_is_not_one_address_is_ignored() -> None:
    for header in ("203.0.113.9, 10.0.0.1", "unknown", "", "203.0.113.9/24"):
        assert login_peer("10.1.2.3", header, PROXY) == "10.1.2.3"
    assert login_peer("10.1.2.3", None, PROXY) == "10.1.2.3"
    assert login_peer(None, "203.0.113.9", PROXY) is None
