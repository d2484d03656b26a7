"""fedchain: decentralized, incentivized federated learning on Ethereum."""

__version__ = "0.1.0"
