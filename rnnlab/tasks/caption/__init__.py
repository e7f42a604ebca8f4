"""The caption task: its data, model and task object."""
