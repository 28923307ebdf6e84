"""Item text from a RecBole dataset's item fields (shared by LUMOS, MLTFR and L3Rec).

Reads the dataset's atomic ``<dataset>.item`` file (the public catalogue text,
e.g. ml-100k ``movie_title``, ``release_year``, ``class``) whatever ``load_col``
loaded, and aligns it with the dataset's *internal* item ids (row 0 = padding).
"""
import csv
import os

import numpy as np

TEXT_TYPES = ("token", "token_seq")


class MissingItemTextError(ValueError):
    """The dataset has no item text fields (no ``.item`` file or no token fields)."""


class ItemTexts:
    """Per-item text fields indexed by internal item id (index 0 is the padding item)."""

    def __init__(self, fields):
        self.fields = fields  # name -> list[str], all of length n_items
        names = list(fields)
        self.title_field = names[0]
        self.n_items = len(fields[names[0]])

    @property
    def titles(self):
        """The first text field (e.g. ``movie_title``): what a prompt names an item by."""
        return self.fields[self.title_field]

    def text(self, item_id, sep="; "):
        """All text fields of one item joined (what a text encoder embeds)."""
        return sep.join(v[item_id] for v in self.fields.values() if v[item_id])

    def texts(self, sep="; "):
        return [self.text(i, sep) for i in range(self.n_items)]


def item_file_path(config):
    name = config["dataset"]
    return os.path.join(config["data_path"], f"{name}.item")


def load_item_texts(config, dataset, fields=None):
    """:class:`ItemTexts` of ``dataset`` from its ``.item`` file.

    ``fields`` (default: config ``item_text_fields``, else every ``token`` /
    ``token_seq`` field other than the item id) names the text columns in order;
    the first is the title.  Items without a row get empty strings.
    Raises :class:`MissingItemTextError` when there is no text to read.
    """
    path = item_file_path(config)
    if not os.path.isfile(path):
        raise MissingItemTextError(
            f"Dataset '{config['dataset']}' has no item file {path}: the item-text views "
            f"(view_generator llm/semantic) need item titles. Use view_generator=augment or none.")
    iid_field = dataset.iid_field
    with open(path, encoding=config["encoding"] if "encoding" in config else "utf-8") as f:
        reader = csv.reader(f, delimiter=config["field_separator"] or "\t", quoting=csv.QUOTE_NONE)
        header = next(reader)
        rows = list(reader)
    names = [h.split(":")[0] for h in header]
    types = {h.split(":")[0]: h.split(":")[-1] for h in header}
    if fields is None and "item_text_fields" in config:
        fields = config["item_text_fields"]
    if fields is None:
        fields = [n for n in names if n != iid_field and types[n] in TEXT_TYPES]
    missing = [f for f in fields if f not in names]
    if not fields or missing or iid_field not in names:
        raise MissingItemTextError(
            f"Dataset '{config['dataset']}' has no usable item text fields in {path} "
            f"(asked {list(fields or [])}, file has {names}); the llm/semantic view "
            f"generators need item titles.")
    token2id = dataset.field2token_id[iid_field]
    n_items = dataset.item_num
    out = {f: [""] * n_items for f in fields}
    col = {f: names.index(f) for f in fields}
    id_col = names.index(iid_field)
    for row in rows:
        internal = token2id.get(row[id_col]) if id_col < len(row) else None
        if internal is None:
            continue
        for f in fields:
            out[f][internal] = row[col[f]].strip() if col[f] < len(row) else ""
    if not any(out[fields[0]][1:]):
        raise MissingItemTextError(f"Field '{fields[0]}' of {path} is empty for every item.")
    return ItemTexts(out)


def popularity(dataset):
    """Interaction count of each internal item id (numpy array, length n_items)."""
    items = dataset.inter_feat[dataset.iid_field].numpy()
    return np.bincount(items, minlength=dataset.item_num)
