"""The administrator's web console: server-side pages mounted at "/" beside the REST API.

Pages are rendered from the same library calls as the API (no second rule): the session and
CSRF rules in ``console_base``, logging in and out in ``console_session``, people and
deletion in ``console_people``, enrollment in ``console_enroll`` (at a door: ``console_capture``,
over the REST route's own function), doors and events in
``console_doors``, access groups, schedules and areas in ``console_access``, the audit log and
accounts in ``console_admin``; the language (中文 / English)
in ``console_i18n``. The browser gets plain
HTML, one stylesheet and small static scripts (no inline script, so the
Content-Security-Policy can forbid them); the navigation shows what the role may open.
"""
from __future__ import annotations

import fastapi

from appliance.web import (console_access, console_admin, console_doors, console_enroll, console_i18n,
                           console_people, console_session)

router = fastapi.APIRouter()
for _part in (console_session, console_i18n, console_people, console_enroll, console_doors, console_access,
              console_admin):
    router.include_router(_part.router)
