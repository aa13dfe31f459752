"""The hotline domain every service shares: threads, messages, consultations, clients.

- ``identity``: keys and ids (a thread's key and id, new ids, reply tokens);
- ``model``: the domain's constants (priorities, thread statuses, event names) and the
  constructors of a new thread and of a phone consultation (pure);
- ``repository``: the only door to threads, messages, claims, events, sessions in MongoDB;
- ``email_threading``: which thread a mail continues (pure);
- ``client_left``: a chat whose client left (quick exit, silence): its mark and rules (pure);
- ``outbound``: handing a stored reply to its channel, and the outbox;
- ``announce``: the console events (published, and kept in the event log where asked).

Services import ``shared`` (plumbing) and ``conversations`` (this), never each other.
"""
