"""SessionRunHooks: they fetch only what they need, only when they need it."""
