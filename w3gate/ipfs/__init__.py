"""The operator's IPFS node (driven over the Kubo RPC API): fetches, measures, holds and provides pinned content."""
