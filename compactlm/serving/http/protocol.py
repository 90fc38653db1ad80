"""Request and response bodies in OpenAI's wire format (completions, chat completions, models, errors).

Requests are strict (unknown fields are rejected) so a typo such as ``max_token`` fails with a 400 that
names it instead of being silently ignored. OpenAI parameters the engine does not implement are
accepted only at their neutral value (``n=1``, penalties 0, ``echo=false``...), which the schema says,
so a client learns it from the OpenAPI document or from a 400 naming the field. ``min_tokens`` is an
extension (as in vLLM): EOS is suppressed until that many tokens are generated.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from compactlm.serving.engine.sampling import MAX_STOP_SEQUENCES


def _utf8(value: str) -> str:
    # JSON can carry lone surrogates ("\ud800") that no tokenizer or UTF-8 response can handle.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid UTF-8 text (it contains a lone surrogate)") from None
    return value


Text = Annotated[str, AfterValidator(_utf8)]
NonEmptyText = Annotated[str, Field(min_length=1), AfterValidator(_utf8)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamOptions(_Strict):
    """``stream_options``: ``include_usage`` adds a final chunk with the token counts."""

    include_usage: bool = False


class _SamplingFields(_Strict):
    """Parameters shared by completions and chat completions."""

    model: Text = Field(min_length=1, description="The served model's id (see GET /v1/models).")
    temperature: float | None = Field(None, ge=0.0, le=2.0, allow_inf_nan=False,
                                      description="0 for greedy decoding; default 1.")
    top_p: float | None = Field(None, gt=0.0, le=1.0, allow_inf_nan=False, description="Nucleus sampling mass.")
    n: int | None = Field(None, ge=1, le=1, description="Only 1 is supported.")
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    stop: NonEmptyText | Annotated[list[NonEmptyText], Field(max_length=MAX_STOP_SEQUENCES)] | None = None
    seed: int | None = Field(None, ge=0, le=2**53 - 1)  # exact in JSON numbers
    presence_penalty: float | None = Field(None, ge=0, le=0, description="Not supported: 0 only.")
    frequency_penalty: float | None = Field(None, ge=0, le=0, description="Not supported: 0 only.")
    logit_bias: dict[str, float] | None = Field(None, max_length=0, description="Not supported: empty only.")
    user: Text | None = Field(None, max_length=256)
    min_tokens: int | None = Field(None, ge=0, description="Extension: no EOS before this many tokens.")

    def stop_list(self) -> tuple[str, ...]:
        """``stop`` as a tuple (empty when not given)."""
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class CompletionRequest(_SamplingFields):
    """POST /v1/completions: the prompt is fed to the model as is (after BOS)."""

    prompt: NonEmptyText | Annotated[list[NonEmptyText], Field(min_length=1, max_length=64)]
    max_tokens: int | None = Field(None, ge=1, description="Default: the server's serve.max_new_tokens.")
    echo: Literal[False] | None = Field(None, description="Not supported: false only.")
    logprobs: Literal[0] | None = Field(None, description="Not supported: 0 only.")
    best_of: Literal[1] | None = Field(None, description="Only 1 is supported.")
    suffix: None = Field(None, description="Not supported.")

    def prompts(self) -> list[str]:
        """``prompt`` as a list (one prompt, or several)."""
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class ResponseFormat(_Strict):
    """``response_format``: plain text only."""

    type: Literal["text"]


class TextPart(_Strict):
    """One text part of a message's content list."""

    type: Literal["text"]
    text: Text


class ChatMessage(_Strict):
    """One message of a conversation; content as a string or a list of text parts."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Text | list[TextPart] | None = None
    name: Text | None = Field(None, max_length=256)

    def text(self) -> str:
        """The content as one string (text parts joined; ``""`` when empty)."""
        if self.content is None:
            return ""
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatCompletionRequest(_SamplingFields):
    """POST /v1/chat/completions: messages rendered with the model's chat template."""

    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=256)]
    max_tokens: int | None = Field(None, ge=1, description="Default: the server's serve.max_new_tokens.")
    max_completion_tokens: int | None = Field(None, ge=1, description="Same as max_tokens (newer name).")
    logprobs: Literal[False] | None = Field(None, description="Not supported: false only.")
    top_logprobs: Literal[0] | None = Field(None, description="Not supported: 0 only.")
    tools: list[dict[str, Any]] | None = Field(None, max_length=0, description="Not supported: empty only.")
    response_format: ResponseFormat | None = Field(None, description="Only {'type': 'text'}.")

    @model_validator(mode="after")
    def _one_user_message(self) -> ChatCompletionRequest:
        if not any(m.role == "user" and m.text().strip() for m in self.messages):
            raise ValueError("messages must include a non-empty user message")
        return self

    def token_budget(self) -> int | None:
        """``max_completion_tokens``, else ``max_tokens`` (None: the server's default)."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class BatchItem(_Strict):
    """One entry of POST /v1/completions/batch (per-item parameters, never streamed)."""

    id: Text | None = Field(None, max_length=128, description="Echoed back in the result.")
    prompt: NonEmptyText
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0, allow_inf_nan=False)
    top_p: float | None = Field(None, gt=0.0, le=1.0, allow_inf_nan=False)
    stop: NonEmptyText | Annotated[list[NonEmptyText], Field(max_length=MAX_STOP_SEQUENCES)] | None = None
    seed: int | None = Field(None, ge=0, le=2**53 - 1)  # exact in JSON numbers
    min_tokens: int | None = Field(None, ge=0)

    def stop_list(self) -> tuple[str, ...]:
        """``stop`` as a tuple (empty when not given)."""
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class BatchRequest(_Strict):
    """POST /v1/completions/batch: up to 256 prompts, each with its own parameters."""

    model: Text = Field(min_length=1)
    inputs: Annotated[list[BatchItem], Field(min_length=1, max_length=256)]


# --- responses ----------------------------------------------------------------------------------------------


class Usage(BaseModel):
    """Token counts of a response (prompt tokens include BOS)."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionChoice(BaseModel):
    """One completion of a /v1/completions response."""

    index: int
    text: str
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class CompletionResponse(BaseModel):
    """The body of a /v1/completions response (OpenAI ``text_completion``)."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class AssistantMessage(BaseModel):
    """The assistant's reply in a chat choice."""

    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    """The one choice of a /v1/chat/completions response."""

    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class ChatCompletionResponse(BaseModel):
    """The body of a /v1/chat/completions response (OpenAI ``chat.completion``)."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class BatchResult(BaseModel):
    """The result of one batch item, in input order (``id`` echoed)."""

    index: int
    id: str | None = None
    text: str
    finish_reason: Literal["stop", "length"]
    usage: Usage


class BatchResponse(BaseModel):
    """The body of a /v1/completions/batch response."""

    object: Literal["list"] = "list"
    model: str
    data: list[BatchResult]
    usage: Usage


class ModelCard(BaseModel):
    """One entry of GET /v1/models (OpenAI ``model``)."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "compactlm"


class ModelList(BaseModel):
    """GET /v1/models: the served model."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    """OpenAI's error object: ``param`` names the offending field, ``code`` a machine-readable reason."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """Every error answer: ``{"error": {...}}`` as OpenAI sends it."""

    error: ErrorDetail
