"""Dense-retriever training (``xdr train``): :func:`xdr.train.dual.train_dual_encoder`.

Nothing is imported here, so that light modules of this package (e.g. negative mining) do not pull in
sentence-transformers and datasets on import.
"""
