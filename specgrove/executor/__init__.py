"""The real thing: torch + transformers models running dynamic-tree speculative decoding.

A draft worker grows one tree per request (the shared tree policies), a target worker
verifies every request's tree in one packed forward, ``verify`` accepts losslessly (greedy
and sampling), and the KV caches keep only the accepted path. Imports torch; nothing below
this package (policies, tree, registry) does.
"""
