"""Adapters that put losskit's losses into other libraries' models (each an optional extra).

Nothing here imports the library it adapts until it is used: ``import losskit`` never needs it.
"""
