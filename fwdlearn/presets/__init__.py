"""Shipped presets (TOML): the papers' configurations as data."""
