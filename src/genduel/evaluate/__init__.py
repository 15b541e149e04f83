"""The evaluate stage: samples -> judge features -> metric rows, likelihood bounds, inference
probes, Inception metrics, GAN training diagnostics and latent-space studies."""
