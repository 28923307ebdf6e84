"""User and item embeddings of the global CF model (L³Rec paper §4.1, "Local Community Discovery").

The global model is any RecBole general recommender with user/item
representations; it both defines the space in which communities are found and
serves as the fallback for users in no community (eq. 7).

* ``MultiVAE`` (RecBole's name for MultVAE, the paper's choice): the user
  embedding is the encoder mean ``μ`` of the user's training interaction vector;
  an item's embedding is ``μ`` of the one-hot vector of that item (a user who
  saw only this item), so users and items share one latent space.
* ``LightGCN``: the propagated embeddings of its ``forward()``.
* Any model with ``user_embedding`` and ``item_embedding`` tables (BPR, ...).
"""
import numpy as np
import torch
import torch.nn.functional as F


def _multivae_mean(model, rows):
    hidden = model.encoder(F.normalize(rows))
    return hidden[:, : int(model.lat_dim / 2)]


@torch.no_grad()
def cf_user_item_embeddings(model, batch_size=4096):
    """``(user_embeddings, item_embeddings)`` as float32 numpy arrays indexed by RecBole id."""
    was_training = model.training
    model.eval()
    try:
        if hasattr(model, "encoder") and hasattr(model, "get_rating_matrix") and hasattr(model, "lat_dim"):
            users = [
                _multivae_mean(model, model.get_rating_matrix(
                    torch.arange(s, min(s + batch_size, model.n_users), device=model.device)))
                for s in range(0, model.n_users, batch_size)
            ]
            items = [
                _multivae_mean(model, F.one_hot(
                    torch.arange(s, min(s + batch_size, model.n_items), device=model.device),
                    model.n_items).float())
                for s in range(0, model.n_items, batch_size)
            ]
            user_emb, item_emb = torch.cat(users), torch.cat(items)
        elif type(model).__name__ == "LightGCN":
            user_emb, item_emb = model.forward()
        elif isinstance(getattr(model, "user_embedding", None), torch.nn.Embedding) and isinstance(
                getattr(model, "item_embedding", None), torch.nn.Embedding):
            user_emb, item_emb = model.user_embedding.weight, model.item_embedding.weight
        else:
            raise ValueError(
                f"L3Rec cannot read user/item embeddings from global model {type(model).__name__}: "
                "use MultiVAE, LightGCN or a model with user_embedding/item_embedding tables (e.g. BPR)")
    finally:
        model.train(was_training)
    return (np.ascontiguousarray(user_emb.float().cpu().numpy()),
            np.ascontiguousarray(item_emb.float().cpu().numpy()))
