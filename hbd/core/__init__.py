"""The sans-I/O core: decisions only. Nothing here reads a clock, a socket or a file.

Inputs carry `now` (monotonic seconds) as a parameter; outputs are frames to send,
events (past-tense nouns) and actions (imperatives) for the I/O shell to carry out.
"""
