"""From packed layers to what the hardware streams: column-combining packing, tiles and
schedules, and the bit packing of every stream payload (as spec/ describes it)."""
