"""Access rules: who may open which door when (groups, weekly schedules, holidays, validity,
anti-passback). Pure evaluation shared by the matcher (central mode) and the door (local
modes); the rules themselves are stored by ``appliance.stores.access`` (docs/access.md)."""
