"""The model accelerator (DESIGN.md §10, spec/model.py): the array, its program in on-chip memory,
a sequencer and the post-processing in hardware."""
