"""The networks and their likelihoods, no training code: nets.py (the shared conv blocks),
judge.py, vae.py, gan.py, likelihood.py. Each model module has a ``build_*`` function that
rebuilds its network from a checkpoint's ``model_config`` (see
:func:`genduel.checkpoint.rebuild`). MLflow's pickled models refer to these module paths."""
