"""The xdr version, recorded in every artifact: its own module so that the lowest layer can read it."""

__version__ = "0.1.0"
