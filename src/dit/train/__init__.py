"""dit.train: the training engine (EMA, parallelism applied from outside the model, the loop).

Import submodules directly (``dit.train.trainer``, ``dit.train.ema``, ``dit.train.parallelize``);
this package imports nothing heavy itself.
"""
