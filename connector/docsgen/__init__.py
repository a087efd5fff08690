"""Generate the reference parts of the docs from the models, so they cannot drift."""
