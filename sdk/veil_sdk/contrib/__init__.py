"""Recipes for frameworks: each module imports its framework, the rest of the SDK never does."""
