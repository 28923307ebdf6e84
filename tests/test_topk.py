"""Top-K items for given users from a saved checkpoint, for every model of this package.

RecBole's answer to "top-K for these users from my saved model" is
``recbole.utils.case_study.full_sort_topk``.  Each test trains a tiny model with
``saved=True``, reloads the checkpoint with :func:`recbole_llm.quick_start.load_data_and_model`,
and checks that ``full_sort_topk`` gives, for three users, the top 10 of the
scores RecBole's evaluator ranks for those users' test rows: the model's own
``full_sort_predict`` on the test loader's batches, the padding item and the
loader's ``history_index`` at -inf (``Trainer._full_sort_batch_eval``).  POD
(beam search) ranks its beam through the same call; deeper lists, an
``eval_exclude_history`` loader and users without a test row are what
:mod:`recbole_llm.case_study` adds to RecBole's call.
"""
import numpy as np
import pytest
import torch
from recbole.utils.case_study import full_sort_scores, full_sort_topk

from conftest import TINY_SEQ
from federated_fixtures import TINY_FED
from mltfr_fixtures import MLTFR_TINY
from recbole_llm import case_study
from recbole_llm.quick_start import load_data_and_model, run_recbole_llm
from test_l3rec import TINY_L3REC
from tests.pod_fixtures import TINY_POD

pytestmark = pytest.mark.usefixtures("one_torch_thread")

K = 10
SMALL = {"user_inter_num_interval": "[20,30)"}  # ~150 users of ml-100k: every run takes seconds

CONFIGS = {
    "SASRec": dict(TINY_SEQ, **SMALL),
    "MLTFR": dict(MLTFR_TINY, llm_experts=["minilm"], token_pool=64, num_tokens=4),
    "FedSeq": dict(TINY_FED, **SMALL, client_fraction=0.05),
    "ConFedSRS": dict(TINY_FED, **SMALL, client_fraction=0.05),
    "LUMOS": dict(TINY_FED, **SMALL, client_fraction=0.05),  # semantic views (LUMOS.yaml)
    "FedSeq-individual": dict(TINY_FED, **SMALL, individual_learning=True),  # one model per user (Fig. 2)
    "L3Rec": dict(TINY_L3REC),
    "L3RecTopN": dict({k: v for k, v in TINY_L3REC.items() if k not in ("local_config", "MAX_ITEM_LIST_LENGTH")},
                      local_config={"embedding_size": 16}),
}


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory):
    from recbole_llm.llm.tiny_t5 import save_tiny_t5

    return str(save_tiny_t5(tmp_path_factory.mktemp("t5") / "tiny-t5"))


def train_and_reload(model, config_dict, tmp_path):
    model = model.split("-")[0]
    result = run_recbole_llm(model=model, dataset="ml-100k", saved=True,
                             config_dict=dict(config_dict, checkpoint_dir=str(tmp_path / "saved")))
    return load_data_and_model(result["saved_model_file"])


def three_users(test_data):
    """Three users with test rows, not in id order (the call must keep the order it is given)."""
    users = np.unique(test_data.dataset.inter_feat[test_data.dataset.uid_field].numpy())
    return [int(users[5]), int(users[0]), int(users[-1])]


@torch.no_grad()
def evaluator_scores(model, test_data, users, device):
    """The scores RecBole's evaluator ranks for the test rows of ``users``, in ``users`` order."""
    uid_field = test_data.dataset.uid_field
    rows = {u: [] for u in users}
    model.eval()
    for interaction, history_index, _, _ in test_data:
        scores = model.full_sort_predict(interaction.to(device)).view(len(interaction), -1).clone()
        scores[:, 0] = -np.inf
        if history_index is not None:
            scores[history_index] = -np.inf
        for r, u in enumerate(interaction[uid_field].tolist()):
            if u in rows:
                rows[u].append(scores[r])
    assert all(rows[u] for u in users)
    return torch.stack([s for u in users for s in rows[u]])


def assert_is_topk(reference, values, items, k=K):
    """``items`` are a top-k of ``reference`` (each row), best first, ``values`` their scores.

    Exact item equality is asked where the k-th and (k+1)-th scores differ; within a
    group of tied (or float-equal) scores any order is a correct top-k.
    """
    ref_values, ref_items = torch.topk(reference, k)
    assert values.shape == items.shape == (len(reference), k)
    torch.testing.assert_close(values, ref_values, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(reference.gather(1, items), ref_values, atol=1e-5, rtol=1e-5)
    assert all(len(set(row.tolist())) == k for row in items)
    assert torch.isfinite(values).all() and (items > 0).all()  # real items, never padding or masked ones
    strict = (ref_values[:, :-1] - ref_values[:, 1:] > 1e-4).all(1)  # no near-ties among the top k
    assert torch.equal(items[strict], ref_items[strict])


def check_topk(model, test_data, config, users):
    device = config["device"]
    values, items = full_sort_topk(users, model, test_data, k=K, device=device)
    reference = evaluator_scores(model, test_data, users, device)
    assert_is_topk(reference, values, items)
    torch.testing.assert_close(full_sort_scores(users, model, test_data, device=device), reference,
                               atol=1e-5, rtol=1e-5)
    ours = case_study.full_sort_topk(users, model, test_data, k=K, device=device)
    assert_is_topk(reference, *ours)
    return values, items


@pytest.mark.parametrize("model_name", list(CONFIGS))
def test_full_sort_topk_of_a_saved_model(model_name, tmp_path):
    config, model, dataset, _, _, test_data = train_and_reload(model_name, CONFIGS[model_name], tmp_path)
    users = three_users(test_data)
    if model_name == "FedSeq-individual":
        assert type(model).__name__ == "IndividualModels"
    _, items = check_topk(model, test_data, config, users)
    tokens = dataset.id2token(dataset.iid_field, items.cpu())
    assert tokens.shape == items.shape and "[PAD]" not in tokens
    if model_name.startswith("L3Rec"):  # fused lists hold fusion_list_length items: deeper is refused
        with pytest.raises(ValueError, match=r"k=51 > 50.*set model.list_length = k"):
            case_study.full_sort_topk(users, model, test_data, k=51)
    if model_name == "L3Rec":  # every fusion of the local models' lists
        for fusion in ("count", "rrf", "wrrf_cf", "wrrf_valid"):
            model.fusion = fusion
            check_topk(model, test_data, config, users)


def test_pod_ranks_its_beam_through_the_same_call(tiny_t5, tmp_path):
    """POD decodes: its full_sort_predict scores the beam_size best items, every other -inf."""
    config, model, _, _, _, test_data = train_and_reload("POD", dict(TINY_POD, pod_llm=tiny_t5), tmp_path)
    assert model.beam_size == K
    users = three_users(test_data)
    values, items = check_topk(model, test_data, config, users)  # k <= beam_size: the beam, best first
    assert (values[:, :-1] >= values[:, 1:]).all()

    # deeper than the beam: RecBole's call pads with arbitrary -inf items, ours refuses and says what to do
    deeper, _ = full_sort_topk(users, model, test_data, k=K + 1)
    assert torch.isinf(deeper[:, K]).all()
    with pytest.raises(ValueError, match=r"k=11 > 10.*POD decodes.*beam_size=10.*model.beam_size = k"):
        case_study.full_sort_topk(users, model, test_data, k=K + 1)
    model.beam_size = K + 1  # as the message says
    values, items = case_study.full_sort_topk(users, model, test_data, k=K + 1)
    assert torch.isfinite(values).all() and (items > 0).all()


def test_eval_exclude_history_is_honoured(tmp_path):
    """RecBole's full_sort_scores does not mask a sequential model's history; the loader of
    ``eval_exclude_history: True`` does, and ``recbole_llm.case_study`` follows the loader."""
    config, model, _, _, _, test_data = train_and_reload(
        "SASRec", dict(CONFIGS["SASRec"], eval_exclude_history=True), tmp_path)
    users = three_users(test_data)
    reference = evaluator_scores(model, test_data, users, config["device"])
    assert_is_topk(reference, *case_study.full_sort_topk(users, model, test_data, k=K))
    torch.testing.assert_close(case_study.full_sort_scores(users, model, test_data), reference)
    masked = torch.isinf(reference) & torch.isfinite(full_sort_scores(users, model, test_data))
    assert masked.sum(1).min() >= 19  # each user's >= 20 interactions, less the test target and repeats

    # a user without a test row would get no row from RecBole's call (the next users' lists shift up)
    assert len(full_sort_scores([users[0], 0, users[1]], model, test_data)) == 2
    with pytest.raises(ValueError, match=r"user id\(s\) \[0\] have no row in the test set"):
        case_study.full_sort_topk([users[0], 0, users[1]], model, test_data, k=K)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")  # ray, imported by recbole.quick_start
def test_recboles_own_loader_cannot_read_these_checkpoints(tmp_path):
    """``recbole.quick_start.load_data_and_model`` expects a pickled Config (torch<2.6): use ours."""
    from recbole.quick_start import load_data_and_model as recbole_load

    result = run_recbole_llm(model="SASRec", dataset="ml-100k", saved=True,
                             config_dict=dict(CONFIGS["SASRec"], checkpoint_dir=str(tmp_path)))
    with pytest.raises(KeyError, match="seed"):  # checkpoint["config"] is plain data, not a Config
        recbole_load(result["saved_model_file"])
