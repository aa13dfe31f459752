from services.email_ingest.app import create_app
from services.email_ingest.settings import EmailIngestSettings
from shared.lifecycle import main

main(create_app, EmailIngestSettings)
