"""The ground every other folder stands on: errors, process setup, determinism, constants.

It imports nothing of the project, so `data/`, `models/`, `metrics/`, `hooks/`,
`core/`, `tools/` and a fork's own modules may all import it. Importing it changes
no global state.
"""
