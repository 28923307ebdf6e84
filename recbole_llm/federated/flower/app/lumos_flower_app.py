"""Flower app entry points (``flwr run``): the ServerApp / ClientApp of recbole_llm.federated.flower."""
from recbole_llm.federated.flower import apps

server_app = apps.server_app
client_app = apps.client_app
