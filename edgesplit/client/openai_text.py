"""Token ids → the text an OpenAI client sees: incremental detokenisation with stop strings, and log-probabilities.

:class:`TextAssembler` decodes the whole generation after each token (byte-level BPE pieces only make sense
together) and releases only text that can no longer change the answer: it holds back a trailing incomplete
character and any tail that could be the beginning of a stop string, so a stop string split across tokens is still
found and cut, and streamed text is exactly the non-streamed text, chunk by chunk.

:class:`LogprobFormatter` turns the edge's ``logprob`` / ``top_logprobs`` (token ids) into the completions
(``tokens``, ``token_logprobs``, ``top_logprobs``, ``text_offset``) or the chat (``content: [{token, logprob,
bytes, top_logprobs}]``) shape.
"""

from __future__ import annotations

from edgesplit.client.split_client import TokenEvent


def _held_tail(text: str, stops: list[str]) -> int:
    """Characters at the end of ``text`` that could still grow into a stop string (or a multi-byte character)."""
    hold = len(text) - len(text.rstrip("\ufffd"))  # an incomplete UTF-8 sequence decodes to U+FFFD
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:size]):
                hold = max(hold, size)
                break
    return hold


class TextAssembler:
    """Accumulates generated token ids and releases their text, cut before the first stop string."""

    def __init__(self, tokenizer, stops: list[str]) -> None:
        self.tokenizer, self.stops = tokenizer, stops
        self.tokens: list[int] = []
        self.sent = 0
        """Characters of the decoded text released so far."""
        self.stopped = False
        """A stop string was found (the text ends before it)."""

    def _text(self) -> str:
        return self.tokenizer.decode(self.tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def push(self, token: int) -> str:
        """Add one token; returns the newly released text (possibly ``""``). Sets :attr:`stopped` on a stop."""
        self.tokens.append(token)
        text = self._text()
        cuts = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if cuts:
            self.stopped = True
            return self._release(text, min(cuts))
        return self._release(text, len(text) - _held_tail(text, self.stops))

    def flush(self) -> str:
        """Everything not yet released (the generation ended without a stop string)."""
        return "" if self.stopped else self._release(self._text(), None)

    def _release(self, text: str, end: int | None) -> str:
        end = len(text) if end is None else end
        if end <= self.sent:
            return ""
        piece, self.sent = text[self.sent:end], end
        return piece


class LogprobFormatter:
    """The OpenAI ``logprobs`` object of some tokens (``chat`` shape or completions shape)."""

    def __init__(self, tokenizer, top: int, chat: bool) -> None:
        self.tokenizer, self.top, self.chat = tokenizer, top, chat
        self.offset = 0
        """Characters of token text before the next token (completions' ``text_offset``)."""

    def _piece(self, token: int) -> str:
        return self.tokenizer.decode([token], skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def format(self, events: list[TokenEvent]) -> dict:
        """The logprobs of ``events`` (the next tokens of the answer)."""
        return self._chat(events) if self.chat else self._completion(events)

    def _alternatives(self, event: TokenEvent) -> list[tuple[str, float]]:
        return [(self._piece(int(t)), float(lp)) for t, lp in (event.top_logprobs or [])[: self.top]]

    def _chat(self, events: list[TokenEvent]) -> dict:
        def entry(text: str, logprob: float | None) -> dict:
            return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

        content = [{**entry(self._piece(e.token), e.logprob),
                    "top_logprobs": [entry(t, lp) for t, lp in self._alternatives(e)]} for e in events]
        return {"content": content, "refusal": None}

    def _completion(self, events: list[TokenEvent]) -> dict:
        pieces = [self._piece(e.token) for e in events]
        offsets = []
        for piece in pieces:
            offsets.append(self.offset)
            self.offset += len(piece)
        return {"tokens": pieces, "token_logprobs": [e.logprob for e in events],
                "top_logprobs": [dict(self._alternatives(e)) for e in events], "text_offset": offsets}
