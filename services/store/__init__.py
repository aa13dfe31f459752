"""store: threads and messages in MongoDB, the consultant HTTP API and the web console."""
