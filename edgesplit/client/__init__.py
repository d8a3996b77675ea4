"""The UE side of a deployment: :class:`SplitClient` / :class:`AsyncSplitClient` over HTTP (httpx), no Ray."""

from edgesplit.client.split_client import AsyncSplitClient, GenerationResult, SplitClient, TokenEvent
from edgesplit.client.transport import EdgeCallError, HttpTransport

__all__ = ["AsyncSplitClient", "EdgeCallError", "GenerationResult", "HttpTransport", "SplitClient", "TokenEvent"]
