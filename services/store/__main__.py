from services.store.app import create_app
from services.store.settings import StoreSettings
from shared.lifecycle import main

main(create_app, StoreSettings)
