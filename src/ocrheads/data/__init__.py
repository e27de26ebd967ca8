"""Synthetic text-in-image tasks with exact character boxes."""
