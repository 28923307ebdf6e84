"""Individual learning: the no-federation reference curve of LUMOS Fig. 2 (§5.4).

The paper compares federated training with "individual learning" at each
participation level but does not define the latter.  Our reading, chosen so that
the two curves differ in one thing only: every client keeps its *own* model,
starting from the same initial model as FedAvg, and is trained in exactly the
rounds FedAvg samples it (same sampler and seed, ``local_epochs`` steps of the
same client objective with a fresh Adam, as a FedAvg client) -- but from its own
current parameters, and nothing is ever averaged or sent anywhere.  Each user is
scored by RecBole's full-ranking evaluator with their own model; a user who was
never sampled keeps the initial model.  Switch: ``individual_learning: True``.
"""
import torch
from recbole.model.abstract_recommender import AbstractRecommender

from recbole_llm.federated.client_update import flatten_parameters, parameter_views, trainable_parameters


class IndividualModels(AbstractRecommender):
    """One parameter row per user (buffer ``table``, ``[user_num, P]``) behind the base model.

    ``full_sort_predict`` / ``predict`` score every row of a batch with its user's own
    parameters, so RecBole's ``Trainer.evaluate`` and checkpoints work unchanged.
    """

    def __init__(self, model, user_num):
        super().__init__()
        self.model = model
        self.type, self.input_type, self.USER_ID = model.type, model.input_type, model.USER_ID
        params = trainable_parameters(model)
        self.shapes = {k: v.shape for k, v in params.items()}
        initial = flatten_parameters(params, self.shapes, next(model.parameters()).device)
        self.register_buffer("table", initial.repeat(int(user_num), 1))

    def own_parameters(self, user):
        """``{name: tensor}``: the current model of ``user``."""
        return {k: v[int(user)] for k, v in parameter_views(self.table, self.shapes).items()}

    def _per_user(self, method, interaction):
        users = interaction[self.USER_ID].tolist()
        named = dict(self.model.named_parameters())
        scores = []
        with torch.no_grad():
            for i, user in enumerate(users):
                for name, tensor in self.own_parameters(user).items():
                    named[name].copy_(tensor)
                scores.append(getattr(self.model, method)(interaction[i:i + 1]))
        return torch.cat(scores)

    def full_sort_predict(self, interaction):
        return self._per_user("full_sort_predict", interaction)

    def predict(self, interaction):
        return self._per_user("predict", interaction)

    def calculate_loss(self, interaction):
        raise NotImplementedError("individual models are trained by FederatedTrainer, one client at a time")

    def other_parameter(self):
        return self.model.other_parameter()

    def load_other_parameter(self, para):
        self.model.load_other_parameter(para)


def train_own_models(engine, individual, clients):
    """One round of individual learning: each client trains its own row of ``individual.table``.

    Uses the FedAvg engine's client update (``engine.train_rows`` over ``engine.chunks``),
    started from the clients' own parameters; returns the mean last local loss.
    """
    losses = []
    for chunk in engine.chunks(clients):
        rows = torch.tensor([c.user_id for c in chunk], device=individual.table.device)
        flat = individual.table[rows]  # advanced indexing: a copy, trained and written back
        losses.append(engine.train_rows(flat, individual.shapes, chunk).float().cpu())
        individual.table[rows] = flat
    return float(torch.cat(losses).mean())
