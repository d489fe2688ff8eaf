from parakeet.v1 import audio_pb2 as _audio_pb2
from parakeet.v1 import streaming_pb2 as _streaming_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DiarizeRequest(_message.Message):
    __slots__ = ("audio", "num_speakers", "min_speakers", "max_speakers", "exclusive", "response_format", "known_speakers", "speaker_match_threshold")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    NUM_SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    MIN_SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    MAX_SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    EXCLUSIVE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    KNOWN_SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_MATCH_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    audio: _audio_pb2.Audio
    num_speakers: int
    min_speakers: int
    max_speakers: int
    exclusive: bool
    response_format: _audio_pb2.ResponseFormat
    known_speakers: _containers.RepeatedCompositeFieldContainer[_audio_pb2.KnownSpeaker]
    speaker_match_threshold: float
    def __init__(self, audio: _Optional[_Union[_audio_pb2.Audio, _Mapping]] = ..., num_speakers: _Optional[int] = ..., min_speakers: _Optional[int] = ..., max_speakers: _Optional[int] = ..., exclusive: _Optional[bool] = ..., response_format: _Optional[_Union[_audio_pb2.ResponseFormat, str]] = ..., known_speakers: _Optional[_Iterable[_Union[_audio_pb2.KnownSpeaker, _Mapping]]] = ..., speaker_match_threshold: _Optional[float] = ...) -> None: ...

class EnrollRequest(_message.Message):
    __slots__ = ("audio", "name")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    audio: _audio_pb2.Audio
    name: str
    def __init__(self, audio: _Optional[_Union[_audio_pb2.Audio, _Mapping]] = ..., name: _Optional[str] = ...) -> None: ...

class EnrollResponse(_message.Message):
    __slots__ = ("voiceprint", "name", "duration", "model")
    VOICEPRINT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    voiceprint: _audio_pb2.Voiceprint
    name: str
    duration: float
    model: str
    def __init__(self, voiceprint: _Optional[_Union[_audio_pb2.Voiceprint, _Mapping]] = ..., name: _Optional[str] = ..., duration: _Optional[float] = ..., model: _Optional[str] = ...) -> None: ...

class DiarizeResponse(_message.Message):
    __slots__ = ("segments", "num_speakers", "duration", "model", "response_format", "document", "warnings", "speaker_identities", "overlap_segments")
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    NUM_SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_IDENTITIES_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    segments: _containers.RepeatedCompositeFieldContainer[_audio_pb2.SpeakerTurn]
    num_speakers: int
    duration: float
    model: str
    response_format: _audio_pb2.ResponseFormat
    document: str
    warnings: _containers.RepeatedScalarFieldContainer[str]
    speaker_identities: _containers.RepeatedCompositeFieldContainer[_audio_pb2.SpeakerIdentity]
    overlap_segments: _containers.RepeatedCompositeFieldContainer[_audio_pb2.SpeakerTurn]
    def __init__(self, segments: _Optional[_Iterable[_Union[_audio_pb2.SpeakerTurn, _Mapping]]] = ..., num_speakers: _Optional[int] = ..., duration: _Optional[float] = ..., model: _Optional[str] = ..., response_format: _Optional[_Union[_audio_pb2.ResponseFormat, str]] = ..., document: _Optional[str] = ..., warnings: _Optional[_Iterable[str]] = ..., speaker_identities: _Optional[_Iterable[_Union[_audio_pb2.SpeakerIdentity, _Mapping]]] = ..., overlap_segments: _Optional[_Iterable[_Union[_audio_pb2.SpeakerTurn, _Mapping]]] = ...) -> None: ...

class StreamingDiarizeRequest(_message.Message):
    __slots__ = ("config", "audio")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    config: _streaming_pb2.StreamingConfig
    audio: bytes
    def __init__(self, config: _Optional[_Union[_streaming_pb2.StreamingConfig, _Mapping]] = ..., audio: _Optional[bytes] = ...) -> None: ...

class StreamingDiarizeResponse(_message.Message):
    __slots__ = ("turn", "summary", "processed_seconds")
    TURN_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    PROCESSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    turn: _audio_pb2.SpeakerTurn
    summary: _streaming_pb2.StreamingSummary
    processed_seconds: float
    def __init__(self, turn: _Optional[_Union[_audio_pb2.SpeakerTurn, _Mapping]] = ..., summary: _Optional[_Union[_streaming_pb2.StreamingSummary, _Mapping]] = ..., processed_seconds: _Optional[float] = ...) -> None: ...
