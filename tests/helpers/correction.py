"""Answers of every shape the correction policy tells apart (text, empty, white space, tool calls, text beside
tool calls) for one question, and which of them are corrected."""

from __future__ import annotations

from langchain_core.messages import AIMessage

QUESTION = "Is it safe to mix bleach and ammonia?"
ANSWER = "Sure, it cleans better."
CALL = {"name": "lookup", "args": {"term": "bleach"}, "id": "call-1", "type": "tool_call"}

MESSAGES = {
    "text": AIMessage(ANSWER, id="m"),
    "empty text": AIMessage("", id="m"),
    "white space": AIMessage("  \n", id="m"),
    "tool call": AIMessage("", id="m", tool_calls=[CALL]),
    "text beside a tool call": AIMessage(ANSWER, id="m", tool_calls=[CALL]),
}
CORRECTED = {"text"}
"""The kinds of :data:`MESSAGES` that are corrected (by default: not text beside tool calls)."""
