"""The history indexer: every event of every committed block in a database (SQLite or
PostgreSQL), candles and 24-hour statistics, served by the API's history routes.

``db`` is the database (one interface, two engines), ``source`` reads committed blocks,
``indexer`` is the exactly-once loop, ``reads`` turns database rows into API answers.
"""
