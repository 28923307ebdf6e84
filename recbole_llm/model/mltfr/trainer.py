"""MLTFRTrainer: the two training rounds of MLTFR (§2.2.2, Algorithm 1).

One ``fit`` runs Round 1 (backbone, experts and gate; ``round1_epochs``, default
``epochs``), reloads the best Round-1 weights, estimates the experts' Fisher
importance on ``fisher_batches`` training batches, builds and freezes the
semantic-consensus expert, writes a ``*-round1.pth`` checkpoint, then runs Round 2
(``epochs``) with W_output = W_base + alpha * W_SC.  With ``use_sc: False`` (the
paper's "w/o SC" ablation) it is RecBole's single-round ``Trainer.fit``.
Early stopping applies within each round.

Round 2's optimiser: a fresh one (RecBole's ``learner``, ``learning_rate``,
``weight_decay``) over exactly the parameters Algorithm 1's line 25 updates -- θ_S,
the experts θ_Em and the gate θ_G, not the frozen θ_SC.  Algorithm 1 initialises
nothing between the rounds, but Round 2 starts from the reloaded best (converged)
Round-1 weights, and Round 1's Adam moments belong to its last epoch, which early
stopping leaves up to ``stopping_step`` epochs past that point; a fresh state matches
the weights it steps.  A test checks the state is empty and θ_SC absent when Round 2
begins.
"""
import itertools
import os

import numpy as np
from recbole.trainer import Trainer

from recbole_llm.compat import load_checkpoint


class MLTFRTrainer(Trainer):
    """RecBole ``Trainer`` whose ``fit`` trains both MLTFR rounds."""

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False,
            callback_fn=None):
        if not self.model.use_sc:
            return super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)
        round2_epochs = self.epochs
        round1_epochs = self.config["round1_epochs"]
        self.epochs = round2_epochs if round1_epochs is None else round1_epochs
        self.logger.info(f"MLTFR round 1: {self.epochs} epochs without the consensus expert")
        super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)
        if saved and os.path.isfile(self.saved_model_file):  # the converged (best) Round-1 model
            checkpoint = load_checkpoint(self.saved_model_file, map_location=self.device)
            self.model.load_state_dict(checkpoint["state_dict"])
        self.model.build_semantic_consensus(self.fisher_batches(train_data))
        if saved:
            self._save_checkpoint(self.epochs - 1, verbose=verbose,
                                  saved_model_file=self.round1_model_file)
        self.logger.info(f"MLTFR round 2: {round2_epochs} epochs with the frozen consensus expert")
        self.optimizer = self._build_optimizer(params=[p for p in self.model.parameters() if p.requires_grad])
        self.epochs, self.start_epoch, self.cur_step = round2_epochs, 0, 0
        self.best_valid_score = -np.inf if self.valid_metric_bigger else np.inf
        self.best_valid_result = None
        return super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)

    @property
    def round1_model_file(self):
        root, ext = os.path.splitext(self.saved_model_file)
        return f"{root}-round1{ext}"

    def fisher_batches(self, train_data):
        """The small training subset of eq. 13: the first ``fisher_batches`` batches."""
        n = self.config["fisher_batches"]  # checked by MLTFR_RULES when the model was built
        return [batch.to(self.device) for batch in itertools.islice(train_data, n)]
