"""Datasets: generated and from folders, and the transforms they share."""
