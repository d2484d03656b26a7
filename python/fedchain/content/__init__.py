"""Content-addressed storage: CIDs, the UnixFS DAG builder, a Kubo RPC client and an embedded local node.

Import the submodules directly (`fedchain.core.cid`, `.unixfs`, `.client`, `.node`); this package module
stays empty of imports so that `python -m fedchain.content.node` starts fast and loads no HTTP client.
"""
