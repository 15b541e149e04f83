"""Training: loop.py (the one epoch skeleton every trainer shares) and a step function and trainer
per model (judge.py, vae.py, gan.py); gan_init.py writes the generator's starting weights."""
