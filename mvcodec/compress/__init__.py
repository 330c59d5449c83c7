"""Compressing a network's parameters, by the papers' concepts.

pruning.py       adaptive pruning masks (training)
steps.py         quantisation steps: each element's step from the stored steps (training and decoding)
gaussian.py      the Gaussian entropy model: its statistics, and the bits of symbols under it
range_coding.py  range coding of symbols and masks with constriction
qat.py           quantisation-aware training: learned steps, Quant-Noise, the rate term, export (training)
coding.py        coded tensors from symbols or weights (encoding)
decoding.py      float32 values from coded tensors (decoding: the decoder imports only this side)
"""
