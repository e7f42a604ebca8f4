"""The lm task: its data, model and task object."""
