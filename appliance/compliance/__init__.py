"""The auditor's self-check: every requirement of the standard and the rules it cites, judged
on the live site, with its evidence and what to do where it is not met.

``requirements`` reads the list (data: ``config/compliance/requirements.toml``); ``evidence``
and ``records`` gather what the site shows (stores, keys, PKI, audit log; reports and the test
record); ``checks`` judges each row; ``report`` builds the JSON document and logs it; ``render``
writes the HTML page and prints the PDF. ``appliance compliance report --out DIR`` runs it
(``docs/compliance/README.md``). It sits on floor 5: it reads the matcher's sync store, the
ops duties and the stores, and nothing below imports it.
"""
