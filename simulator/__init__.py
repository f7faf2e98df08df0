"""A local stand-in for Microsoft Entra ID, Partner Center and Azure Key Vault.

It speaks their HTTP protocols over HTTPS on loopback so that the control panel, its tests and its
demo can run without reaching Microsoft. It imports nothing from the project.
"""

from __future__ import annotations

from simulator.world import World

__all__ = ["World"]
__version__ = "1.0.0"
