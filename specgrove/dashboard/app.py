"""The specgrove dashboard: ``specgrove dashboard`` runs ``streamlit run`` on this file.

Pages over the simulator's API (what-if, sweep) and over results files (executor, validation,
replay, study). Nothing here imports the executor or torch: real runs are read from the files
they wrote.
"""

from __future__ import annotations

import streamlit as st

from specgrove.dashboard import (
    page_executor,
    page_replay,
    page_study,
    page_sweep,
    page_validation,
    page_whatif,
)

# (render, title, url path); the first is the landing page.
PAGES = (
    (page_whatif.render, "What-if", "what-if"),
    (page_sweep.render, "Sweep", "sweep"),
    (page_executor.render, "Executor results", "executor"),
    (page_validation.render, "Validation", "validation"),
    (page_replay.render, "Replay", "replay"),
    (page_study.render, "Study", "study"),
)


def main() -> None:
    st.set_page_config(page_title="specgrove", layout="wide")
    pages = [st.Page(fn, title=title, url_path=url, default=i == 0) for i, (fn, title, url) in enumerate(PAGES)]
    st.navigation(pages).run()


main()
