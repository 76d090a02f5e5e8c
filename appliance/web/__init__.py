"""The web console and REST API of the central node (``appliance console``).

A floor above ``matcher``, ``ops`` and ``stores``: every route calls the same library calls
as the command line (``ProtectedData``, ``Accounts``, ``EnrollmentDesk``, ``SyncStore``), so a
rule is enforced once, below; nothing below imports this package. ``app.create_app`` builds
the FastAPI application; ``services.Services`` holds the stores one process opens.
"""
