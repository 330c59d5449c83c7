"""mvcodec: a multi-view video codec built on the MV-MGINR implicit neural representation."""

__version__ = "0.1.0"
