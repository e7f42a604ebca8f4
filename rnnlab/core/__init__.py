"""The core: cells (one step), layers (the loop over time), the torch.nn drop-ins and the fast
path, with the registry that names the cells."""
