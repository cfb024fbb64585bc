"""tmax-mesh core: identity, invites, friends, sealed messaging, local API and plugin host."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tmax-mesh")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"
