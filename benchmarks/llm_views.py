"""LUMOS views from a real on-device LLM (SmolLM2-135M-Instruct) for every ml-100k user.

For each user's training sequence the ``llm`` generator of LUMOS §4.2 writes a future,
a paraphrased and a counterfactual view (3 prompts per user).  Reported: wall time on
this machine, generated tokens and tokens/s, the fraction of generated titles that map
to a catalogue item, fallbacks to the semantic view, and how often the *future* view's
new items contain the user's true next item (the validation item) -- against the
``semantic`` generator and a random one that draws as many unseen items uniformly.

    python benchmarks/llm_views.py             # all 943 users
    python benchmarks/llm_views.py --users 60  # a first look
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import peak_rss_mb, write_results  # noqa: E402


def new_future_items(view, seq):
    seen = set(seq)
    return [v for v in view.future if v not in seen]


def hit_rate(views, sequences, truth):
    hits = [truth[u] in new_future_items(v, s) for u, v, s in zip(sorted(truth), views, sequences)]
    sizes = [len(new_future_items(v, s)) for v, s in zip(views, sequences)]
    return sum(hits) / len(hits), sum(sizes) / len(sizes)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=0, help="first N users only (0 = all)")
    parser.add_argument("--llm", default="smollm2-135m")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_new_tokens", type=int, default=48)
    parser.add_argument("--cache", default=False, help="view cache directory (default: off, so that generation is timed)")
    args = parser.parse_args()
    import numpy as np
    import torch

    from recbole_llm.config import Config
    from recbole_llm.federated.client_data import build_clients
    from recbole_llm.model.lumos.views import build_view_generator
    from recbole_llm.quick_start import prepare

    cfg = {"view_generator": "llm", "llm_path": args.llm, "lumos_view_cache": args.cache,
           "llm_batch_size": args.batch_size,
           "llm_max_new_tokens": args.max_new_tokens, "show_progress": True, "state": "INFO",
           "MAX_ITEM_LIST_LENGTH": 50}
    config = Config(model="LUMOS", dataset="ml-100k", config_dict=cfg, command_line=False)
    _, train, valid, _ = prepare(config)
    clients = build_clients(train.dataset, config["MAX_ITEM_LIST_LENGTH"])
    if args.users:
        clients = clients[:args.users]
    inter = valid.dataset.inter_feat
    next_item = dict(zip(inter[config["USER_ID_FIELD"]].tolist(), inter[config["ITEM_ID_FIELD"]].tolist()))
    truth = {c.user_id: next_item[c.user_id] for c in clients}
    sequences, users = [c.sequence.tolist() for c in clients], [c.user_id for c in clients]

    t0 = time.perf_counter()
    llm = build_view_generator(config, train.dataset)
    llm.text_generator  # load the LM now (it is built on first use), so that generation is timed alone
    load_s = time.perf_counter() - t0
    torch.set_num_threads(os.cpu_count())
    t0 = time.perf_counter()
    llm_views = llm.generate(sequences, users)
    gen_s = time.perf_counter() - t0
    tokens = llm.text_generator.generated_tokens
    cached_s = None
    if args.cache:  # a second run with the same settings: every user's views come from the cache
        t0 = time.perf_counter()
        again = build_view_generator(config, train.dataset).generate(sequences, users)
        cached_s = time.perf_counter() - t0
        assert again == llm_views

    semantic = build_view_generator(Config(model="LUMOS", dataset="ml-100k",
                                           config_dict=dict(cfg, view_generator="semantic"),
                                           command_line=False), train.dataset)
    sem_views = semantic.generate(sequences, users)
    rng = np.random.default_rng(0)
    k = semantic.future_length
    random_hits = []
    for seq, u in zip(sequences, users):
        unseen = np.setdiff1d(np.arange(1, train.dataset.item_num), seq)
        random_hits.append(truth[u] in set(rng.choice(unseen, size=k, replace=False).tolist()))

    llm_hit, llm_k = hit_rate(llm_views, sequences, truth)
    sem_hit, sem_k = hit_rate(sem_views, sequences, truth)
    rows = [
        {"generator": f"llm ({args.llm})", "future hit rate": llm_hit, "new future items / user": llm_k},
        {"generator": "semantic (MiniLM neighbours)", "future hit rate": sem_hit, "new future items / user": sem_k},
        {"generator": "random unseen items", "future hit rate": float(np.mean(random_hits)),
         "new future items / user": float(k)},
    ]
    extra = {"users": len(clients), "prompts": 3 * len(clients), "model_load_s": round(load_s, 1),
             "generation_s": round(gen_s, 1), "generation_min": round(gen_s / 60, 2),
             "cached_second_run_s": cached_s and round(cached_s, 2),
             "generated_tokens": tokens, "tokens_per_s": round(tokens / gen_s, 1),
             "mapped_fraction": round(llm.mapped_fraction, 4), "titles_generated": llm.titles_generated,
             "fallbacks_to_semantic": llm.fallbacks, "peak_rss_mib": round(peak_rss_mb()),
             "torch_threads": torch.get_num_threads()}
    print(extra)
    write_results("llm_views" + (f"_{args.users}users" if args.users else ""), rows, cfg, extra=extra)


if __name__ == "__main__":
    main()
