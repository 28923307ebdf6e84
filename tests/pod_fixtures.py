"""Shared pieces of the POD tests: a tiny offline T5 and a small ml-100k config."""
TINY_POD = {
    "epochs": 1,
    "MAX_ITEM_LIST_LENGTH": 10,
    "train_batch_size": 256,
    "eval_batch_size": 256,
    "user_inter_num_interval": "[20,22]",  # ~80 users of ml-100k: a run takes seconds
    "show_progress": False,
    "state": "WARNING",
    "topk": [5, 10],
    "beam_size": 10,
    "seed": 2020,
}
