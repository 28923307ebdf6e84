"""recbole_llm: LLM-enhanced recommenders (MLTFR, LUMOS, L3Rec) as a RecBole plug-in."""
from recbole_llm.compat import import_recbole_models, restore_dok_update

__version__ = "0.1.0"

# Importing RecBole's models (as any RecBole run does) switches autograd anomaly
# detection on for the process; import them once here and switch it back off.
import_recbole_models()
restore_dok_update()  # RecBole's graph models call a SciPy method SciPy>=1.12 removed
