"""Stop sequences applied on the client side, for whole texts and for streams.

Engines differ: TGI returns the stop sequence as part of the text, OpenAI servers leave it out. Backends cut
it here so that :class:`~langchain_aligner.GenerationParams` means the same everywhere ("not included").
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["StopTrimmer", "cut_at_stop"]


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """Return ``text`` up to the first occurrence of any stop sequence."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return text if cut < 0 else text[:cut]


class StopTrimmer:
    """Releases streamed text only once it cannot be the start of a stop sequence.

    ``feed`` returns the text that is safe to emit; once a stop sequence is complete, ``stopped`` is true
    and nothing more is released. ``flush`` releases what is held back when the stream ends; ``finish``
    releases the rest of the whole text when the stream ends with it.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [s for s in stops if s]
        self._held = ""
        self._released: list[str] = []
        self.stopped = False

    def feed(self, text: str) -> str:
        """Add streamed text; return the part that may be emitted now."""
        ready = self._release(text)
        self._released.append(ready)
        return ready

    def finish(self, whole: str) -> str:
        """The last piece of a stream that ends with its ``whole`` text (TGI's ``generated_text``): what that
        text, cut at the first stop sequence, has beyond the pieces released so far, so that the pieces add
        up to it. (A generation that ends inside a UTF-8 character has it in its whole text, as U+FFFD, but
        in no token's text.) When the pieces are not the start of it, what is held back."""
        released = "".join(self._released)
        whole = cut_at_stop(whole, self._stops)
        return whole[len(released) :] if whole.startswith(released) else self.flush()

    def _release(self, text: str) -> str:
        if self.stopped:
            return ""
        if not self._stops:
            return text
        self._held += text
        cut = cut_at_stop(self._held, self._stops)
        if len(cut) < len(self._held):
            self.stopped, self._held = True, ""
            return cut
        keep = max(
            (k for s in self._stops for k in range(1, len(s)) if self._held.endswith(s[:k])), default=0
        )
        ready, self._held = self._held[: len(self._held) - keep], self._held[len(self._held) - keep :]
        return ready

    def flush(self) -> str:
        """Release what is held back (the stream ended without completing a stop sequence)."""
        held, self._held = self._held, ""
        return "" if self.stopped else held
