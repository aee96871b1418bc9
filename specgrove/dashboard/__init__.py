"""A Streamlit what-if app over the simulator and recorded executor runs (no torch import)."""
