"""The service layer: handlers that take a unit of work and do one job each."""
