from services.chat_ingest.app import create_app
from services.chat_ingest.settings import ChatIngestSettings
from shared.lifecycle import main

main(create_app, ChatIngestSettings)
