"""crimetag's ML core: taxonomy, text features, the classifier and the model store.

Imports neither Flask nor click, so the CLI, the service and library users share it.
"""
