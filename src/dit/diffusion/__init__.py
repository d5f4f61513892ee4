"""dit.diffusion"""
