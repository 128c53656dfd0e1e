"""The descriptor net (paper appendix G): encoders, model, loss, training and inference.

Needs the ``torch`` extra: ``pip install 'matseg[torch]'``.
"""
