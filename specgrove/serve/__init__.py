"""``specgrove serve``: the executor behind an OpenAI-compatible HTTP API (FastAPI + uvicorn).

``runner`` puts the engine on its own thread; ``app`` is the HTTP surface; ``metrics`` the
Prometheus registry. ``load`` (beside them) is the open-loop load generator that replays the
simulator's workloads against a server. Needs the ``serve`` extra (and ``executor`` for the
server itself).
"""
