"""Message templates: Jinja2 in a sandbox that bounds what a client's values can make, and
prints them as the rule file's author means."""
