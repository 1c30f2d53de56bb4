"""Fulfilment: one run per source for an approved request, the packages built from what they gathered, erasure's aftermath, downloads."""
