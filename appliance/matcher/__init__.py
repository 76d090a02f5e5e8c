"""The central matcher: one replica serves many doors - decisions (never scores), device sync,
exactly-once events, deletion confirmations. The matching rules themselves live in
``appliance.matching``; ``app`` composes a replica, ``service`` routes its topics."""
