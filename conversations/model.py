"""Constants of the hotline domain. Pure: no I/O."""

from __future__ import annotations

# A thread's priority: a crisis or danger signal goes first, and one that waited too long is
# escalated above that (services/dispatcher/priority.py decides, the sweeper escalates).
NORMAL = 0
URGENT = 10
ESCALATED = 20
