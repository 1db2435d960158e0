"""``--method tilewise``: tile-wise pruning (Guo et al., SC 2020)."""
from ..jointopt import TileWiseSchedule
from ..pruning import prunable_layers
from .base import SPARSITY_TARGET, CompressError, Flag, SparsityMethod


def _check_tile_size(tile_size):
    if tile_size is not None and tile_size < 1:
        raise CompressError(f"--tile-size must be >= 1, not {tile_size}")


TILE_SIZE = Flag("tile_size", "output channels per tile", type=int, check=_check_tile_size,
                 show=lambda size: "--rows" if size is None else str(size))


class TileWise(SparsityMethod):
    name = "tilewise"
    summary = ("tile-wise pruning (Guo et al.) to --sparsity: whole output channels, then inputs inside tiles "
               "of --tile-size output channels, gradually; the output layer is left whole; packed losslessly")
    flags = (SPARSITY_TARGET, TILE_SIZE)

    def label(self, options):
        return f"{self.name} {options.sparsity:.0%}"

    def schedule(self, options, model):
        # Tile-wise pruning removes whole output channels first: in the output layer those are classes.
        output_layer = prunable_layers(model)[-1][0]
        return TileWiseSchedule(epochs=options.finetune_epochs, sparsity=options.sparsity,
                                tile_size=options.tile_size or options.rows, skip=(output_layer,))
