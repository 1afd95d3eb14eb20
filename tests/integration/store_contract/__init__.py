"""The store's contract, one suite run on every backend (the ``database`` fixture is
parametrized over SQLite and PostgreSQL): whatever passes here holds on both.

Writes go through a ``UnitOfWork`` and are committed explicitly, the way the service
uses the store; reads that check the outcome use a separate ``ReadOnly`` transaction,
so they see only what was committed.
"""
