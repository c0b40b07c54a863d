"""The built-in learning swarm: the fourth layer of env/'s stack (wire < components < history < swarm < runtime).

K numpy policy models, an aggregation and an evolution that speak the published RLGym
network's messages, the genetic algorithm and the population file. Built on
:mod:`cartpole_tui.env.wire` (and env/defaults, paths) only; the runtime's embedded network
and ``cartpole-tui swarm`` run it.
"""
