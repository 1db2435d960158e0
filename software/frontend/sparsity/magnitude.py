"""``--method magnitude``: unstructured magnitude pruning, layer by layer."""
from ..jointopt import MagnitudeSchedule
from .base import SPARSITY_TARGET, SparsityMethod


class Magnitude(SparsityMethod):
    name = "magnitude"
    summary = "unstructured magnitude pruning of every layer to --sparsity, gradually; packed losslessly"
    flags = (SPARSITY_TARGET,)

    def label(self, options):
        return f"{self.name} {options.sparsity:.0%}"

    def schedule(self, options, model):
        return MagnitudeSchedule(epochs=options.finetune_epochs, sparsity=options.sparsity)
