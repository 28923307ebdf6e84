"""Federated learning for LUMOS, FedSeq and ConFedSRS (LUMOS §3, §4).

* :mod:`.client_data` -- each user a client holding its own training sequence;
* :mod:`.client_update` -- the local Adam update and the sequential reference engine;
* :mod:`.vectorized` -- the exact batched engine (vmap over stacked clients);
* :mod:`.server` -- FedAvg over :class:`ParameterUpdate` (parameters only);
* :mod:`.sampling` -- client sampling per round;
* :mod:`.losses` -- next-item CE and the tri-view InfoNCE;
* :mod:`.recommender` -- the backbone wrapper the three models share;
* :mod:`.views` -- client-side view generators (llm, semantic, augment, none).
"""
