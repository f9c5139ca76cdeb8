"""One module per schema revision, oldest first: 0001 the initial schema, 0002 events and last-seen times."""
