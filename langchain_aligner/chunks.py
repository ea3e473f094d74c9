"""Turning a whole AI message into the last chunk of a stream."""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk

__all__ = ["as_last_chunk"]


def as_last_chunk(message: AIMessage, content: Any = None) -> AIMessageChunk:
    """``message`` as the last (or only) chunk of a stream: same id, metadata, usage and tool calls.

    ``content`` replaces the message's content (``""`` for a metadata-only closing chunk).
    """
    if isinstance(message, AIMessageChunk) and content is None:
        return message
    return AIMessageChunk(
        content=message.content if content is None else content,
        id=message.id,
        response_metadata=message.response_metadata,
        usage_metadata=message.usage_metadata,
        tool_call_chunks=[
            {
                "name": c["name"],
                "args": json.dumps(c["args"]),
                "id": c["id"],
                "index": i,
                "type": "tool_call_chunk",
            }
            for i, c in enumerate(message.tool_calls)
        ],
        chunk_position="last",
    )
