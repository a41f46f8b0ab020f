"""The ``refit`` command line: thin wrappers over the core, the tasks and the flows."""
