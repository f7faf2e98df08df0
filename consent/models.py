"""Consent flows, their events and the tokens' bookkeeping. The vault's own table lives in consent/vault/."""

from __future__ import annotations
