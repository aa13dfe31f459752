"""dispatcher: threads, routes and queues every inbound message."""
