"""Compressing the network: quantisation, entropy models and range coding (constriction)."""
