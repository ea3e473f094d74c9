"""Prompt templates that frame a question-answer pair for an Aligner.

The same template is used at inference (:class:`~langchain_aligner.AlignerRunnable`) and in training
(``langchain_aligner_train.tokenization``): a correction is learned exactly as it will be asked for.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, model_validator

from langchain_aligner.errors import AlignerInputError

__all__ = [
    "AlignerTemplate",
    "TemplateInjectionError",
    "ALIGNER_V1",
    "TEMPLATES",
    "get_template",
]


class TemplateInjectionError(AlignerInputError):
    """Raised when a question or answer carries the template's own markers and ``on_injection="raise"``."""


class AlignerTemplate(BaseModel):
    """A prompt template with ``{question}`` and ``{answer}`` placeholders.

    ``markers`` are the role strings of the template (e.g. ``"ASSISTANT:"``). A question or answer that
    contains one could end the user turn early and smuggle instructions into the Aligner's own turn, so
    :meth:`format` neutralises them (``on_injection="escape"``, the default) or refuses them
    (``on_injection="raise"``).
    """

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="Short identifier, e.g. 'aligner-v1'.")
    template: str = Field(description="Prompt text with {question} and {answer} placeholders.")
    markers: tuple[str, ...] = Field(default=(), description="Role markers that may not appear in inputs.")

    @model_validator(mode="after")
    def _check_placeholders(self) -> AlignerTemplate:
        for field in ("{question}", "{answer}"):
            if self.template.count(field) != 1:
                raise ValueError(f"template {self.name!r} must contain {field} exactly once")
        return self

    def format(self, question: str, answer: str, *, on_injection: str = "escape") -> str:
        """Return the prompt for one question-answer pair.

        Args:
            question: The user's question.
            answer: The upstream model's answer to correct.
            on_injection: ``"escape"`` breaks up any template marker found in the inputs, ``"raise"``
                raises :class:`TemplateInjectionError`, ``"ignore"`` passes the inputs through unchanged.

        Surrounding whitespace of both inputs is stripped (chat answers often start or end with newlines),
        as training records are: the prompt a correction is learned on is the one it is asked with.
        """
        if on_injection not in ("escape", "raise", "ignore"):
            raise ValueError(f"on_injection must be 'escape', 'raise' or 'ignore', got {on_injection!r}")
        question, answer = question.strip(), answer.strip()
        if on_injection != "ignore":
            question = self._guard(question, "question", on_injection)
            answer = self._guard(answer, "answer", on_injection)
        # str.replace, not str.format: braces in user text must stay literal.
        return self.template.replace("{question}", question, 1).replace("{answer}", answer, 1)

    def find_markers(self, text: str) -> list[str]:
        """Return the markers of this template that occur in ``text`` (case-insensitive)."""
        return [m for m in self.markers if re.search(re.escape(m), text, flags=re.IGNORECASE)]

    def _guard(self, text: str, what: str, on_injection: str) -> str:
        found = self.find_markers(text)
        if not found:
            return text
        if on_injection == "raise":
            raise TemplateInjectionError(f"the {what} contains template marker(s) {found!r}")
        for marker in found:
            # "ASSISTANT:" -> "ASSISTANT :" keeps the text readable but no longer matches the role marker.
            escaped = marker[:-1] + " " + marker[-1] if len(marker) > 1 else marker + " "
            literal = escaped.replace("\\", "\\\\")  # a replacement string: backslashes are escapes there
            text = re.sub(re.escape(marker), literal, text, flags=re.IGNORECASE)
        return text


ALIGNER_V1 = AlignerTemplate(
    name="aligner-v1",
    template=(
        "BEGINNING OF CONVERSATION: USER: Edit the following Question-Answer pair to make it more helpful "
        "and harmless: {question} | {answer} ASSISTANT:"
    ),
    markers=("BEGINNING OF CONVERSATION:", "USER:", "ASSISTANT:"),
)
"""The official inference prompt of Aligner (Ji et al., NeurIPS 2024)."""

ALIGNER_V1_HHH = AlignerTemplate(
    name="aligner-v1-hhh",
    template=(
        "BEGINNING OF CONVERSATION: USER: Edit the following Question-Answer pair to make it more helpful, "
        "harmless and honest: {question} | {answer} ASSISTANT:"
    ),
    markers=("BEGINNING OF CONVERSATION:", "USER:", "ASSISTANT:"),
)
"""A 3H wording in the same conversation format, as used by later Aligner releases."""

ALIGNER_QA_BLOCK = AlignerTemplate(
    name="aligner-qa-block",
    template=(
        "BEGINNING OF CONVERSATION: USER: Edit the following Question-Answer pair to make it more helpful "
        "and harmless.\n##Question: {question}\n##Answer: {answer} ASSISTANT:"
    ),
    markers=("BEGINNING OF CONVERSATION:", "USER:", "ASSISTANT:", "##Question:", "##Answer:"),
)
"""A variant that puts question and answer on labelled lines instead of separating them with ``|``."""

TEMPLATES: dict[str, AlignerTemplate] = {t.name: t for t in (ALIGNER_V1, ALIGNER_V1_HHH, ALIGNER_QA_BLOCK)}
"""Named templates; ``"aligner-v1"`` is the default everywhere."""


def get_template(template: str | AlignerTemplate | None = None) -> AlignerTemplate:
    """Resolve a template given by name, by object, or ``None`` for the default (``aligner-v1``).

    A string that contains both ``{question}`` and ``{answer}`` is taken as a custom template text.
    """
    if template is None:
        return ALIGNER_V1
    if isinstance(template, AlignerTemplate):
        return template
    if template in TEMPLATES:
        return TEMPLATES[template]
    if "{question}" in template and "{answer}" in template:
        return AlignerTemplate(name="custom", template=template, markers=_markers_of(template))
    raise ValueError(f"unknown template {template!r}; known: {sorted(TEMPLATES)} or a text with placeholders")


def _markers_of(template: str) -> tuple[str, ...]:
    """Guess role markers of a custom template: upper-case words ending in a colon (``USER:``)."""
    return tuple(dict.fromkeys(re.findall(r"\b[A-Z][A-Z ]*[A-Z]:", template)))
