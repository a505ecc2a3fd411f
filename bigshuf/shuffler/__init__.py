"""The line shuffle: records -> scatter -> store -> gather -> writing, driven by the engine."""
