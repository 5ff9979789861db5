"""Generative models for offline-RL data augmentation and what is built from them.

Kept import-light: submodules import torch and friends themselves.
"""
