"""Reading a rule file and checking it before anything is sent: its sections and keys, and
each rule's condition and template tried on samples of its trigger."""
