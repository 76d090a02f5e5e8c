"""The site table (``[site]``): what the site declares about itself.

``use`` is the declared purpose of the deployment, which decides which model packs it may
run: a pack whose licence forbids commercial use (``commercial_use = false`` in its
manifest) is refused at start-up on a ``commercial`` site, and the default embedder is the
best pack the declared use allows (``appliance.packs.defaults``). Left empty, the site has
not declared: the services start with the research default and warn at every start-up, in
``appliance site use`` and in the compliance report (docs/models.md, "Licence-aware
defaults", says why). Composed into ``Config`` by ``tables``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field

from appliance.config.fields import Table

COMMERCIAL = "commercial"
RESEARCH = "research"
UNDECLARED = ""
SITE_USES = (COMMERCIAL, RESEARCH)


@dataclass(frozen=True)
class SiteConfig(Table):
    """What the site declares: its use decides which model licences it may run."""

    use: Annotated[Literal[(UNDECLARED,) + SITE_USES], Field(description=(
        "'commercial' (a business deployment: only packs whose licence allows commercial use; the default "
        "embedder is the best such pack) | 'research' (non-commercial research: the most accurate pack) | "
        "empty: not declared (the research default with a warning at every start-up)"))] = UNDECLARED
