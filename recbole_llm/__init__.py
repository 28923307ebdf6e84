"""recbole_llm: LLM-enhanced recommenders (MLTFR, LUMOS, L3Rec) as a RecBole plug-in.

Importing the package is cheap and changes nothing in the process: models are
imported when they are looked up by name (:mod:`recbole_llm.registry`), and each
fix of :mod:`recbole_llm.compat` is applied where it is needed.
"""
__version__ = "0.1.0"
