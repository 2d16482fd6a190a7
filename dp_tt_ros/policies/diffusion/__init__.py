"""Diffusion Policy: DDPM/DDIM schedulers, U-Net and transformer denoisers, the policy itself."""
