"""Fixtures for the consent tests live in tests/conftest.py, shared with the security and browser tests."""
