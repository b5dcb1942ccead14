"""xdr: cross-lingual dense retrieval, from training to augmented indexes to XOR-TyDi evaluation."""

__version__ = "0.1.0"
