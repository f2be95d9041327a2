"""StyleGAN2 face synthesis from a subject's videos, and the paper's evaluation metrics."""
