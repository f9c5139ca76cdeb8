"""Pluggable algorithms, each family in a registry: finders, visualizers, editors."""
