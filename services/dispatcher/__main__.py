from services.dispatcher.app import create_app
from services.dispatcher.settings import DispatcherSettings
from shared.lifecycle import main

main(create_app, DispatcherSettings)
