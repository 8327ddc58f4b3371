"""The `ha` tier: Conveyor on clusters of PostgreSQL and RabbitMQ that the tests start themselves.

Every server here is private (tests/servers.py): started from the Debian packages in a temporary
folder on free ports and removed afterwards; the machine's own services are never touched.
"""
