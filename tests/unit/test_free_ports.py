"""The ports the local stack gives its servers are free, distinct, and never ones the kernel
hands to outgoing connections (deploy/local/stack.py ``free_ports``): a client of the test run
taking a server's port before it binds made a service fail with "address already in use"."""

from __future__ import annotations

import socket
from pathlib import Path

from deploy.local.stack import LOOPBACK, free_ports


def test_ports_are_distinct_bindable_and_outside_the_ephemeral_range() -> None:
    first, last = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    ports = free_ports(200)
    assert len(set(ports)) == 200
    assert not [p for p in ports if first <= p <= last]
    for port in ports[:20]:
        with socket.socket() as server:
            server.bind((LOOPBACK, port))
            server.listen()


def test_a_port_in_use_is_never_given() -> None:
    # Ports held by someone else, below the kernel's range where free_ports chooses: 500 of
    # about 22,000, so 1,000 random choices would meet some of them unless each is checked.
    taken = []
    try:
        for port in free_ports(500):
            s = socket.socket()
            taken.append(s)
            s.bind((LOOPBACK, port))
        used = {s.getsockname()[1] for s in taken}
        assert not used & set(free_ports(1000))
    finally:
        for s in taken:
            s.close()
