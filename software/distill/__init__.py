"""Sparse progressive distillation (SPD) of MiniLM-L6 onto the column-combining array:
corpus (an offline English corpus and its held-out split), spd (the training schedule and loop),
evaluate (cosine, nearest-neighbour agreement and array tiles against the dense model)."""
