"""Model runtimes behind small typed interfaces; each loads its weights when constructed,
never at import time."""
