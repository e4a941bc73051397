"""gridq.node: the agent that runs worker containers or processes on a machine."""
