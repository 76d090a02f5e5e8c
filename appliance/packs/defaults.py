"""The licence-aware choice of embedder: the best pack the site's declared use allows.

One ranked preference list (most accurate first, as measured in docs/models.md); which of
those packs a site may run is read from their manifests (``commercial_use``), never
hard-coded. A pack that is not in the list ranks after every listed one, by id.

* ``commercial``: the default is the best pack with ``commercial_use = true``; a pack without
  it is refused at start-up (``LICENCE_REFUSED``) naming the pack, its licence and the clean
  alternative.
* ``research``: the default is the best pack of all.
* undeclared: the research default (what the project always shipped: switching a site's
  embedder silently would orphan every enrolled template), with a loud warning at every
  start-up until the site declares its use (docs/models.md, "Licence-aware defaults").

Plain values in, so ``appliance.config`` can resolve the default while loading a file.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable

from appliance.errors import ApplianceError, ErrorCode
from appliance.packs.manifest import ModelPack
from appliance.packs.registry import PackRegistry

log = logging.getLogger(__name__)

EMBEDDING = "embedding"
COMMERCIAL, RESEARCH, UNDECLARED = "commercial", "research", ""  # appliance.config.site_tables
# most accurate first (FNMR at FMR 1e-3 on celeba-dev split b, docs/models.md); add a new pack where it ranks
EMBEDDER_PREFERENCE = ("w600k-mbf", "dlib-resnet-v1")


def allowed(pack: ModelPack, use: str) -> bool:
    """May a site of this declared use run ``pack``?"""
    return pack.commercial_use or use != COMMERCIAL


def _rank(pack: ModelPack) -> tuple[int, str]:
    listed = pack.id in EMBEDDER_PREFERENCE
    return (EMBEDDER_PREFERENCE.index(pack.id) if listed else len(EMBEDDER_PREFERENCE), pack.id)


def ranked_embedders(packs: Iterable[ModelPack], use: str) -> list[ModelPack]:
    """The embedding packs ``use`` allows, best first."""
    return sorted((p for p in packs if p.kind == EMBEDDING and allowed(p, use)), key=_rank)


def default_embedder(packs: Iterable[ModelPack], use: str) -> ModelPack:
    """The best embedding pack the declared use allows."""
    packs = list(packs)
    ranked = ranked_embedders(packs, use)
    if not ranked:
        found = ", ".join(sorted(p.id for p in packs if p.kind == EMBEDDING)) or "none"
        raise ApplianceError(ErrorCode.PACK_NOT_FOUND, f"no embedding pack a {use or 'undeclared'} site may run "
                                                       f"(found: {found})")
    return ranked[0]


def undeclared_warning(pack: ModelPack, clean: ModelPack | None) -> str:
    """What a site that has not declared its use is told (start-up log, ``appliance site use``)."""
    licence = "" if pack.commercial_use else f" (licence: {pack.licence}; not for commercial use)"
    advice = f"; a business must set it to commercial (default pack {clean.id}, licence {clean.licence})" \
        if clean is not None and clean.id != pack.id else ""
    return (f"site.use is not declared: running embedder {pack.label}{licence}. Declare [site] use = "
            f"\"commercial\" or \"research\" in the configuration{advice}")


def check_site_use(use: str, pack: ModelPack, registry: PackRegistry, service: str) -> str | None:
    """Refuse a pack the site's use forbids (``LICENCE_REFUSED``); return the warning an
    undeclared site gets (also logged), else None. Every service calls this at start-up,
    before a model is loaded."""
    packs = registry.packs().values()
    if allowed(pack, use):
        if use != UNDECLARED:
            return None
        clean = next(iter(ranked_embedders(packs, COMMERCIAL)), None)
        warning = undeclared_warning(pack, clean)
        log.warning("%s: %s", service, warning)
        return warning
    clean = next(iter(ranked_embedders(packs, COMMERCIAL)), None)
    alternative = (f"use {clean.id} (licence: {clean.licence}): remove models.embedder to get it by default, or "
                   f"set models.embedder = \"{clean.id}\"") if clean else "no commercially usable pack is installed"
    raise ApplianceError(ErrorCode.LICENCE_REFUSED, (
        f"{service}: site.use is \"{use}\" but embedder pack {pack.label} is licensed \"{pack.licence}\", "
        f"which does not allow commercial use; {alternative}"))


def check_configured(use: str, pack_id: str, search_path: tuple[str, ...], service: str) -> str | None:
    """``check_site_use`` for a service that loads no model at start-up (the console): the
    manifests on the configured search path are read; a pack not found is left for the
    pipeline to report when it loads."""
    from appliance import paths

    registry = PackRegistry(paths.model_search_path(search_path))
    pack = registry.packs().get(pack_id)
    return check_site_use(use, pack, registry, service) if pack is not None else None


def licence_status(use: str, pack_id: str, search_path: tuple[str, ...]) -> dict:
    """What ``appliance site use`` prints: the declared use, the embedder and its licence, the
    clean default, and ``status`` ok | undeclared | refused with the reason."""
    from appliance import paths

    registry = PackRegistry(paths.model_search_path(search_path))
    pack = registry.get(pack_id)
    clean = next(iter(ranked_embedders(registry.packs().values(), COMMERCIAL)), None)
    status, detail = "ok", f"{pack.label} is allowed on a {use} site"
    try:
        warning = check_site_use(use, pack, registry, "site")
    except ApplianceError as exc:
        status, detail = "refused", exc.detail
    else:
        if warning is not None:
            status, detail = "undeclared", warning
    return {"use": use or None, "embedder": pack.id, "licence": pack.licence, "commercial_use": pack.commercial_use,
            "commercial_default": clean.id if clean else None, "status": status, "detail": detail}
