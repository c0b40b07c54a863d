"""cartpole-tui: a terminal control room for swergio CartPole networks.

The distribution installs this one import package. Its two halves keep their folders
in the checkout: ``cartpole_tui.env`` (``env/``) speaks swergio and knows no Textual;
``cartpole_tui.tui`` (``tui/``) draws and opens no sockets.
"""
