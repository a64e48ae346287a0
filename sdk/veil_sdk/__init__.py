"""Veil's client SDK: masking algorithms and the decision client, with no Django dependency."""
