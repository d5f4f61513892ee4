"""The ``dit`` command line: one module per sub-command (parse flags → config → one library call)."""
