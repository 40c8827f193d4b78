"""SQLModel tables, the queries that read and write them, and the unit of work.

All SQL of the project lives in this package.
"""
