"""Pool designs, decoders and the simulator."""
