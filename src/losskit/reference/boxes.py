"""boxes losses (work in progress)."""

__all__: list[str] = []
