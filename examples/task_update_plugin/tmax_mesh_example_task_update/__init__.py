"""Example third-party tmax-mesh plugin ``task_update``: an invite scope for
structured task status updates, with payload validation."""

__version__ = "0.1.0"
