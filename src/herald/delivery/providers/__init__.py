"""The channel providers the dispatcher sends through: the stub and the internal log, SMTP
and webhooks, each with its settings from the rule file."""
