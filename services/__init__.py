"""The suite's services; each package is one service with its own database."""
