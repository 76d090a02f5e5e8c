"""Encrypted (SQLCipher) stores: biometric templates, identity registry, key vault, device
cache, outbox, and the deletion/retention rules that act across them."""
