"""Adversarial verdict suite: labelled cases per verifier and the precision/recall they must reach."""
