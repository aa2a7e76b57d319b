"""Pharmacy service: psychoactive OTC sale limits (and, later, e-prescription realisation)."""
