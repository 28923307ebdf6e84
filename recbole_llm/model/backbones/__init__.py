"""The MLTFR Table-2 backbones that RecBole 1.2.1 lacks, as RecBole sequential models.

* :mod:`.fmlprec`, :mod:`.linrec`, :mod:`.cl4srec`, :mod:`.bsarec` -- the models;
* :mod:`.layers` -- their token mixers (filter, linear attention, beyond-self-attention).
"""
from recbole_llm.model.backbones.bsarec import BSARec  # noqa: F401
from recbole_llm.model.backbones.cl4srec import CL4SRec, check_config_before_data  # noqa: F401
from recbole_llm.model.backbones.fmlprec import FMLPRec  # noqa: F401
from recbole_llm.model.backbones.linrec import LinRec  # noqa: F401
