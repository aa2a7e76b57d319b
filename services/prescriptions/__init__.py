"""Prescription ordering (portal and IKP) and e-prescription issuing."""
