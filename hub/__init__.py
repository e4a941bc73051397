"""gridq.hub: the REST service where tasks and nodes are registered."""
