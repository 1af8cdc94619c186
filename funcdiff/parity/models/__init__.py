"""Model porting: torch weights in JAX models, whole-model and training-run parity."""
