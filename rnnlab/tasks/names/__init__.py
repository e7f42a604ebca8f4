"""The names task: its data, model and task object."""
