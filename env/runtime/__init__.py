"""Assembly: the top layer of env/'s stack (wire < components < history < swarm < runtime).

The embedded network (broker and agents in a child process), the session that starts or
joins a network with an environment, a control client and a recorder, and the learning
schedule. ``tui/`` (the app and the command line) builds on these.
"""
