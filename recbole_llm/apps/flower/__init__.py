"""The Flower app of the federated models: ServerApp / ClientApp (:mod:`.apps`) and the
app directory that ``flwr run`` copies (``app/``)."""
