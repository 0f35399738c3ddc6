"""auto-topup: tops up prepaid wallets the moment they run low."""

from importlib.metadata import version

__version__ = version("auto-topup")
