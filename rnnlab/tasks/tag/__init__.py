"""The tag task: its data, model and task object."""
