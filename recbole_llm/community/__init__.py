"""L3Rec communities: FAISS kNN, greedy coverage anchors, kernels, fusion."""
