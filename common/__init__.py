"""The base every layer shares: user errors, atomic writes, default paths and the evaluation protocol's metrics."""
