"""Method-neutral community machinery of L³Rec §4: CF embeddings, greedy coverage anchors, kernels, local-model training, rank fusion (kNN search: :mod:`recbole_llm.knn`)."""
