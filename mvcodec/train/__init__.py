"""Encoder-side training: motion masks, the motion-aware loss and the overfitting loop."""
