"""The classify task: its data, model and task object."""
