from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ResponseFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESPONSE_FORMAT_UNSPECIFIED: _ClassVar[ResponseFormat]
    RESPONSE_FORMAT_JSON: _ClassVar[ResponseFormat]
    RESPONSE_FORMAT_VERBOSE_JSON: _ClassVar[ResponseFormat]
    RESPONSE_FORMAT_TEXT: _ClassVar[ResponseFormat]
    RESPONSE_FORMAT_SRT: _ClassVar[ResponseFormat]
    RESPONSE_FORMAT_VTT: _ClassVar[ResponseFormat]
    RESPONSE_FORMAT_RTTM: _ClassVar[ResponseFormat]
RESPONSE_FORMAT_UNSPECIFIED: ResponseFormat
RESPONSE_FORMAT_JSON: ResponseFormat
RESPONSE_FORMAT_VERBOSE_JSON: ResponseFormat
RESPONSE_FORMAT_TEXT: ResponseFormat
RESPONSE_FORMAT_SRT: ResponseFormat
RESPONSE_FORMAT_VTT: ResponseFormat
RESPONSE_FORMAT_RTTM: ResponseFormat

class Audio(_message.Message):
    __slots__ = ("uri", "content", "format")
    URI_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    uri: str
    content: bytes
    format: str
    def __init__(self, uri: _Optional[str] = ..., content: _Optional[bytes] = ..., format: _Optional[str] = ...) -> None: ...

class SpeakerTurn(_message.Message):
    __slots__ = ("start", "end", "speaker")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_FIELD_NUMBER: _ClassVar[int]
    start: float
    end: float
    speaker: str
    def __init__(self, start: _Optional[float] = ..., end: _Optional[float] = ..., speaker: _Optional[str] = ...) -> None: ...

class Word(_message.Message):
    __slots__ = ("start", "end", "word", "speaker", "confidence", "channel")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    WORD_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    start: float
    end: float
    word: str
    speaker: str
    confidence: float
    channel: int
    def __init__(self, start: _Optional[float] = ..., end: _Optional[float] = ..., word: _Optional[str] = ..., speaker: _Optional[str] = ..., confidence: _Optional[float] = ..., channel: _Optional[int] = ...) -> None: ...

class Segment(_message.Message):
    __slots__ = ("id", "start", "end", "text", "speaker", "channel")
    ID_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    id: int
    start: float
    end: float
    text: str
    speaker: str
    channel: int
    def __init__(self, id: _Optional[int] = ..., start: _Optional[float] = ..., end: _Optional[float] = ..., text: _Optional[str] = ..., speaker: _Optional[str] = ..., channel: _Optional[int] = ...) -> None: ...

class Hotword(_message.Message):
    __slots__ = ("phrase", "boost")
    PHRASE_FIELD_NUMBER: _ClassVar[int]
    BOOST_FIELD_NUMBER: _ClassVar[int]
    phrase: str
    boost: float
    def __init__(self, phrase: _Optional[str] = ..., boost: _Optional[float] = ...) -> None: ...

class Voiceprint(_message.Message):
    __slots__ = ("embedding", "model", "model_version", "speech_seconds")
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SPEECH_SECONDS_FIELD_NUMBER: _ClassVar[int]
    embedding: _containers.RepeatedScalarFieldContainer[float]
    model: str
    model_version: str
    speech_seconds: float
    def __init__(self, embedding: _Optional[_Iterable[float]] = ..., model: _Optional[str] = ..., model_version: _Optional[str] = ..., speech_seconds: _Optional[float] = ...) -> None: ...

class KnownSpeaker(_message.Message):
    __slots__ = ("name", "voiceprint", "reference")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VOICEPRINT_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    voiceprint: Voiceprint
    reference: Audio
    def __init__(self, name: _Optional[str] = ..., voiceprint: _Optional[_Union[Voiceprint, _Mapping]] = ..., reference: _Optional[_Union[Audio, _Mapping]] = ...) -> None: ...

class SpeakerIdentity(_message.Message):
    __slots__ = ("speaker", "name", "similarity")
    SPEAKER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    speaker: str
    name: str
    similarity: float
    def __init__(self, speaker: _Optional[str] = ..., name: _Optional[str] = ..., similarity: _Optional[float] = ...) -> None: ...
