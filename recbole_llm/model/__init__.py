"""Models of recbole_llm, one package per method (each holds the whole of its paper):

* :mod:`.mltfr` -- MLTFR (multi-LLM token filtering and routing) and its two-round trainer;
* :mod:`.lumos` -- LUMOS, FedSeq, ConFedSRS: the client objective, tri-view loss, views;
* :mod:`.l3rec` -- L3Rec, L3RecTopN and their trainer;
* :mod:`.pod` -- POD, the generative local LLM of L3Rec;
* :mod:`.backbones` -- FMLPRec, LinRec, CL4SRec, BSARec and their shared layers.

Methods never import one another: a model that needs another finds it by name
(:func:`recbole_llm.registry.get_model`).
"""
