"""Interventions and downstream evaluation: datasets, prompts, metrics, masking and sink runs."""
