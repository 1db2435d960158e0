"""``--method dense``: no pruning."""
from .base import SparsityMethod


class Dense(SparsityMethod):
    name = "dense"
    summary = "no pruning: the trained model as it is (with --alpha 1, the dense array)"

    def validate(self, options):
        pass        # no fine-tuning needed

    def schedule(self, options, model):
        return None
