"""The written protocol: versioned topics and typed, validated messages (docs/protocol.md)."""
