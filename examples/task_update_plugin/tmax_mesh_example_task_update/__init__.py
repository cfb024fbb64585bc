"""Example third-party tmax-mesh plugin ``task_update``: an invite scope for
structured task status updates, with payload validation."""

import importlib.metadata

__version__ = importlib.metadata.version("tmax-mesh-example-task-update")  # the one source is pyproject.toml
