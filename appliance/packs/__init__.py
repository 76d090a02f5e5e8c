"""Model packs: versioned folders with a manifest, a licence and a verified model file."""
from appliance.packs.manifest import ModelPack, PackSource, load_manifest
from appliance.packs.registry import PackRegistry

__all__ = ["ModelPack", "PackSource", "PackRegistry", "load_manifest"]
