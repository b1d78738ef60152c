"""obliviate: robust machine unlearning: unlearn, attack, heal, audit against a gold retrain."""

__version__ = "0.1.0"
