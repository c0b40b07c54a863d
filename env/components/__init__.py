"""The network's own components: the second layer of env/'s stack (wire < components < history < swarm < runtime).

The environment (one instance, or N vectorised), the control client (with the rules for which
EVO_DONE answers it and what the broker's stats say about the network's health) and a random
agent: each a swergio client on :mod:`cartpole_tui.env.wire`, most with its rules in a
socket-free class beside it. Imports env/wire and env/events, defaults, paths only.
"""
