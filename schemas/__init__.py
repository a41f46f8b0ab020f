"""Data contracts (pandera DataFrameModels). Imports pandas and pandera only."""
