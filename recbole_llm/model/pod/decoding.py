"""Constrained beam search over a trie of item-ID token sequences (POD inference).

POD's own decoding is unconstrained and replaces invalid outputs by random
items; here the decoder may only follow paths of an :class:`ItemTrie` built
from the catalogue's ID token sequences (each ending in EOS), so every
finished hypothesis is a real, distinct item, and its score is the item's
sequence log-likelihood log p(y | x) of L3Rec eq. (3).

The search is batched over users and beams; per step it does one decoder pass
and one top-k, with no Python loop over items.  Beam search is approximate:
with ``beam_size`` at least the number of items it is exact.
"""
import torch
from torch import nn


class ItemTrie(nn.Module):
    """Prefix tree of token sequences as dense tensors.

    Node 0 is the root.  ``child_token[n, c]`` / ``child_node[n, c]`` list the
    children of node ``n`` (``child_node`` is -1 past the last child);
    ``leaf_item[n]`` is the item whose sequence ends at ``n`` (0 elsewhere);
    ``subtree`` (sparse ``[nodes, n_items]``) marks the items below each node.
    """

    def __init__(self, sequences, items):
        super().__init__()
        children = [{}]
        leaf = [0]
        below = []  # (node, item) pairs: item's sequence passes through node
        for seq, item in zip(sequences, items):
            node = 0
            below.append((node, item))
            for token in seq:
                if token not in children[node]:
                    children[node][token] = len(children)
                    children.append({})
                    leaf.append(0)
                node = children[node][token]
                below.append((node, item))
            if leaf[node]:
                raise ValueError(f"items {leaf[node]} and {item} have the same token sequence {seq}")
            if children[node]:
                raise ValueError(f"the sequence of item {item} is a prefix of another item's: {seq}")
            leaf[node] = item
        width = max(len(c) for c in children)
        child_token = torch.zeros(len(children), width, dtype=torch.long)
        child_node = torch.full((len(children), width), -1, dtype=torch.long)
        for n, kids in enumerate(children):
            child_token[n, :len(kids)] = torch.tensor(list(kids.keys()), dtype=torch.long)
            child_node[n, :len(kids)] = torch.tensor(list(kids.values()), dtype=torch.long)
        self.register_buffer("child_token", child_token, persistent=False)
        self.register_buffer("child_node", child_node, persistent=False)
        self.register_buffer("leaf_item", torch.tensor(leaf, dtype=torch.long), persistent=False)
        pairs = torch.tensor(below, dtype=torch.long).T
        subtree = torch.sparse_coo_tensor(pairs, torch.ones(pairs.shape[1]),
                                          (len(children), int(pairs[1].max()) + 1),
                                          check_invariants=False).coalesce()
        self.register_buffer("subtree", subtree, persistent=False)
        self.max_depth = max(len(s) for s in sequences)

    def open_items(self, banned):
        """Per row, how many items not ``banned`` lie below each node ``[rows, nodes]``."""
        allowed = (~banned[:, :self.subtree.shape[1]]).float()
        return torch.sparse.mm(self.subtree, allowed.T).T

    def lookup(self, seq):
        """Item spelled by the token sequence ``seq`` (0 if the trie does not admit it)."""
        node = 0
        for token in seq:
            hit = (self.child_token[node] == token) & (self.child_node[node] >= 0)
            if not hit.any():
                return 0
            node = int(self.child_node[node][hit][0])
        return int(self.leaf_item[node])

    def items(self):
        """All items the trie admits (its leaves)."""
        return self.leaf_item[self.leaf_item > 0]


def constrained_beam_search(next_log_probs, trie, n_rows, beam_size, banned=None, pad_token_id=0):
    """Top-``beam_size`` items per row by beam search restricted to ``trie``.

    ``next_log_probs(prefix, parents)`` maps decoder prefixes
    ``[n_rows * beam_size, t]`` (tokens after the start token) to next-token
    log-probabilities ``[n_rows * beam_size, vocab]``; ``parents[r]`` is the
    row of the previous call that row r extends (None on the first call), so a
    decoder may keep a key/value cache and reorder it.  ``banned`` (bool
    ``[n_rows, n_items]``) forbids items per row, e.g. the history: the search
    never enters a node whose items are all banned, so no beam is lost in a
    dead end.  Returns ``(items, scores)``, both ``[n_rows, beam_size]``,
    scores descending; unfilled slots have item 0 and score -inf.  Finished
    hypotheses stay in the beam with a frozen score.
    """
    device = trie.leaf_item.device
    w = beam_size
    node = torch.zeros(n_rows, w, dtype=torch.long, device=device)
    score = torch.full((n_rows, w), float("-inf"), device=device)
    score[:, 0] = 0.0
    prefix = torch.zeros(n_rows, w, 0, dtype=torch.long, device=device)
    width = trie.child_token.shape[1]
    first_slot = torch.arange(width, device=device) == 0
    open_items = None if banned is None else trie.open_items(banned)
    row_base = torch.arange(n_rows, device=device).unsqueeze(1) * w
    parents = None
    for _ in range(trie.max_depth):
        finished = trie.leaf_item[node] > 0
        if bool((finished | torch.isinf(score)).all()):
            break
        log_probs = next_log_probs(prefix.reshape(n_rows * w, -1), parents).view(n_rows, w, -1)
        c_token = trie.child_token[node]
        c_node = trie.child_node[node]
        cand = score.unsqueeze(-1) + log_probs.gather(-1, c_token)
        cand = cand.masked_fill(c_node < 0, float("-inf"))
        if open_items is not None:
            closed = open_items.gather(1, c_node.clamp(min=0).view(n_rows, -1)).view_as(c_node) == 0
            cand = cand.masked_fill(closed, float("-inf"))
        stay = finished.unsqueeze(-1) & first_slot  # a finished beam keeps itself in slot 0
        cand = torch.where(stay, score.unsqueeze(-1), cand)
        c_node = torch.where(stay, node.unsqueeze(-1), c_node)
        c_token = torch.where(stay, torch.full_like(c_token, pad_token_id), c_token)
        score, flat = cand.view(n_rows, -1).topk(w, dim=1)  # w * width >= w candidates
        beam = flat // width
        node = c_node.view(n_rows, -1).gather(1, flat).clamp(min=0)  # dead beams (-inf) park at the root
        token = c_token.view(n_rows, -1).gather(1, flat)
        prefix = torch.cat([prefix.gather(1, beam.unsqueeze(-1).expand(-1, -1, prefix.shape[-1])),
                            token.unsqueeze(-1)], dim=-1)
        parents = (row_base + beam).view(-1)
    items = trie.leaf_item[node].masked_fill(torch.isinf(score), 0)
    return items, score
