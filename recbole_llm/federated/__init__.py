"""Federated learning for LUMOS (FedAvg server, client update, engines)."""
