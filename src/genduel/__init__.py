"""GenDuel: train a VAE and a GAN on the same images and compare them honestly.

Importing the package is cheap: torch, mlflow and matplotlib are imported by the modules that
need them.
"""

__version__ = "0.1.0"
