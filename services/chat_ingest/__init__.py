"""chat_ingest: the web chat widget's WebSocket and the Telegram webhook."""
