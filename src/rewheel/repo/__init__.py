"""The local repository: its files, records and index pages, and wheel files."""
