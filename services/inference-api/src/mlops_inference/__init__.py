"""Inference API of the clinical MLOps stack: breast mass diagnosis from FNA measurements."""

__version__ = "1.0.0"
