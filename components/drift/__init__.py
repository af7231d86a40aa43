"""Drift between spans: TFX's DistributionValidator, its baseline and a gate that can stop the run."""
