"""The descriptor net (paper appendix G): encoders, model, loss, training and inference.

Needs the ``torch`` extra: ``pip install 'matseg[torch]'``.
"""

#: Values of every precision option (training config, --precision of train and of the inference
#: commands); here, not in config.py, so that building the CLI parsers imports nothing else.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
