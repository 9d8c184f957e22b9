"""Reproducible studies: one YAML file runs data -> preprocessing -> pretraining variants ->
downstream evaluations, reuses finished steps, and compares the variants in one table."""
