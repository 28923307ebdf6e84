"""User/item embeddings of L3Rec's global CF model: MultiVAE, BPR, LightGCN (paper §4.1).

(LightGCN builds only thanks to ``recbole_llm.compat.restore_dok_update``.)"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from recbole.data import create_dataset, data_preparation

from recbole_llm.community.cf_embeddings import cf_user_item_embeddings
from recbole_llm.config import Config
from recbole_llm.utils import get_model

SMALL = {"user_inter_num_interval": "[20,22]", "state": "WARNING", "embedding_size": 8,
         "latent_dimension": 8, "mlp_hidden_size": [16], "eval_args": {
             "split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full"}}


def built(model_name):
    config = Config(model=model_name, dataset="ml-100k", config_dict=SMALL)
    train, _, _ = data_preparation(config, create_dataset(config))
    return get_model(model_name)(config, train._dataset).eval()


def test_multivae_user_embedding_is_encoder_mean_of_history():
    model = built("MultiVAE")
    users, items = cf_user_item_embeddings(model)
    assert users.shape == (model.n_users, 4) and items.shape == (model.n_items, 4)
    with torch.no_grad():
        _, mu, _ = model.forward(model.get_rating_matrix(torch.tensor([3])))
        _, item_mu, _ = model.forward(F.one_hot(torch.tensor([5]), model.n_items).float())
    np.testing.assert_allclose(users[3], mu[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(items[5], item_mu[0].numpy(), atol=1e-6)
    assert model.training is False


def test_bpr_embedding_tables():
    model = built("BPR")
    users, items = cf_user_item_embeddings(model)
    np.testing.assert_allclose(users, model.user_embedding.weight.detach().numpy())
    np.testing.assert_allclose(items, model.item_embedding.weight.detach().numpy())


def test_lightgcn_propagated_embeddings():
    model = built("LightGCN")
    users, items = cf_user_item_embeddings(model)
    with torch.no_grad():
        u, i = model.forward()
    np.testing.assert_allclose(users, u.numpy(), atol=1e-6)
    np.testing.assert_allclose(items, i.numpy(), atol=1e-6)
    assert users.shape == (model.n_users, 8)


def test_model_without_embeddings_is_refused():
    with pytest.raises(ValueError, match="cannot read user/item embeddings"):
        cf_user_item_embeddings(torch.nn.Linear(2, 2))
