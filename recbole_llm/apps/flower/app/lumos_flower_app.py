"""Flower app entry points (``flwr run``): the ServerApp / ClientApp of :mod:`recbole_llm.apps.flower.apps`."""
from recbole_llm.apps.flower import apps

server_app = apps.server_app
client_app = apps.client_app
