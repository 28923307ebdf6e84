"""Method-neutral federated learning machinery (FedAvg, McMahan et al.; used by LUMOS §3).

Knows no method: a model takes part through the client interface
(``client_loss(inputs, targets, lengths[, views, view_lengths])``, ``max_seq_length``,
``causal``, ``use_views``) and a method adds client-side data through
:meth:`.trainer.FederatedTrainer.prepare_cohort`.

* :mod:`.client_data` -- each user a client holding its own training sequence;
* :mod:`.client_update` -- the local update and the sequential reference engine;
* :mod:`.vectorized` -- the exact batched engine (vmap over stacked clients);
* :mod:`.engines` -- the engines by name (config ``fed_engine``);
* :mod:`.server` -- FedAvg over :class:`~.server.ParameterUpdate` (parameters only);
* :mod:`.sampling` -- client sampling per round;
* :mod:`.individual` -- individual learning (every client its own model, no averaging);
* :mod:`.rules` -- the config rules of the federated keys;
* :mod:`.trainer` -- FedAvg rounds as epochs of RecBole's ``Trainer.fit``;
* :mod:`.flower` -- the loopback Flower federation that runs the Flower app
  (:mod:`recbole_llm.apps.flower`).
"""
