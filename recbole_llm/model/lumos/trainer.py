"""Trainers of LUMOS and its baselines: FedAvg rounds (:class:`~recbole_llm.federated.trainer.FederatedTrainer`)
whose clients generate and cache their own views before they train (LUMOS §3, §4.2).

The views are made on the client side from the client's own sequence; the server
never sees them (:mod:`recbole_llm.federated.server` receives parameters only).
"""
from recbole_llm.federated.trainer import FederatedTrainer
from recbole_llm.model.lumos.views import build_view_generator, prepare_views


class LUMOSTrainer(FederatedTrainer):
    """FedAvg with tri-view contrastive clients (LUMOS); FedSeq and ConFedSRS differ only in views."""

    view_generator = None

    def setup_method(self, dataset):
        if self.federated_model.use_views:
            self.view_generator = build_view_generator(self.config, dataset)

    def prepare_cohort(self, cohort):
        if self.view_generator is not None:
            prepare_views(cohort, self.view_generator, self.federated_model.max_seq_length, max(self._round, 0))


class FedSeqTrainer(LUMOSTrainer):
    """Vanilla FedAvg of a sequential backbone (FedSeq baseline; no views unless configured)."""


class ConFedSRSTrainer(LUMOSTrainer):
    """FedAvg with CL4SRec-style augmented views (ConFedSRS baseline)."""
