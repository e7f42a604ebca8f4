"""The seq2seq task: its data, model and task object."""
