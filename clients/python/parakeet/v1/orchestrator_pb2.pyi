from parakeet.v1 import audio_pb2 as _audio_pb2
from parakeet.v1 import streaming_pb2 as _streaming_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OrchestrateRequest(_message.Message):
    __slots__ = ("audio", "language", "timestamps", "word_timestamps", "diarize", "num_speakers", "min_speakers", "max_speakers", "response_format", "speakers_optional", "hotwords", "known_speakers", "speaker_match_threshold", "multichannel")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    WORD_TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    DIARIZE_FIELD_NUMBER: _ClassVar[int]
    NUM_SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    MIN_SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    MAX_SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    SPEAKERS_OPTIONAL_FIELD_NUMBER: _ClassVar[int]
    HOTWORDS_FIELD_NUMBER: _ClassVar[int]
    KNOWN_SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_MATCH_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MULTICHANNEL_FIELD_NUMBER: _ClassVar[int]
    audio: _audio_pb2.Audio
    language: str
    timestamps: bool
    word_timestamps: bool
    diarize: bool
    num_speakers: int
    min_speakers: int
    max_speakers: int
    response_format: _audio_pb2.ResponseFormat
    speakers_optional: bool
    hotwords: _containers.RepeatedCompositeFieldContainer[_audio_pb2.Hotword]
    known_speakers: _containers.RepeatedCompositeFieldContainer[_audio_pb2.KnownSpeaker]
    speaker_match_threshold: float
    multichannel: bool
    def __init__(self, audio: _Optional[_Union[_audio_pb2.Audio, _Mapping]] = ..., language: _Optional[str] = ..., timestamps: _Optional[bool] = ..., word_timestamps: _Optional[bool] = ..., diarize: _Optional[bool] = ..., num_speakers: _Optional[int] = ..., min_speakers: _Optional[int] = ..., max_speakers: _Optional[int] = ..., response_format: _Optional[_Union[_audio_pb2.ResponseFormat, str]] = ..., speakers_optional: _Optional[bool] = ..., hotwords: _Optional[_Iterable[_Union[_audio_pb2.Hotword, _Mapping]]] = ..., known_speakers: _Optional[_Iterable[_Union[_audio_pb2.KnownSpeaker, _Mapping]]] = ..., speaker_match_threshold: _Optional[float] = ..., multichannel: _Optional[bool] = ...) -> None: ...

class Utterance(_message.Message):
    __slots__ = ("start", "end", "speaker", "text")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    start: float
    end: float
    speaker: str
    text: str
    def __init__(self, start: _Optional[float] = ..., end: _Optional[float] = ..., speaker: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class OrchestrateResponse(_message.Message):
    __slots__ = ("text", "segments", "words", "utterances", "speaker_turns", "num_speakers", "duration", "language", "model", "response_format", "document", "warnings", "speaker_identities")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    UTTERANCES_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_TURNS_FIELD_NUMBER: _ClassVar[int]
    NUM_SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_IDENTITIES_FIELD_NUMBER: _ClassVar[int]
    text: str
    segments: _containers.RepeatedCompositeFieldContainer[_audio_pb2.Segment]
    words: _containers.RepeatedCompositeFieldContainer[_audio_pb2.Word]
    utterances: _containers.RepeatedCompositeFieldContainer[Utterance]
    speaker_turns: _containers.RepeatedCompositeFieldContainer[_audio_pb2.SpeakerTurn]
    num_speakers: int
    duration: float
    language: str
    model: str
    response_format: _audio_pb2.ResponseFormat
    document: str
    warnings: _containers.RepeatedScalarFieldContainer[str]
    speaker_identities: _containers.RepeatedCompositeFieldContainer[_audio_pb2.SpeakerIdentity]
    def __init__(self, text: _Optional[str] = ..., segments: _Optional[_Iterable[_Union[_audio_pb2.Segment, _Mapping]]] = ..., words: _Optional[_Iterable[_Union[_audio_pb2.Word, _Mapping]]] = ..., utterances: _Optional[_Iterable[_Union[Utterance, _Mapping]]] = ..., speaker_turns: _Optional[_Iterable[_Union[_audio_pb2.SpeakerTurn, _Mapping]]] = ..., num_speakers: _Optional[int] = ..., duration: _Optional[float] = ..., language: _Optional[str] = ..., model: _Optional[str] = ..., response_format: _Optional[_Union[_audio_pb2.ResponseFormat, str]] = ..., document: _Optional[str] = ..., warnings: _Optional[_Iterable[str]] = ..., speaker_identities: _Optional[_Iterable[_Union[_audio_pb2.SpeakerIdentity, _Mapping]]] = ...) -> None: ...

class StreamingOrchestrateRequest(_message.Message):
    __slots__ = ("config", "audio")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    config: _streaming_pb2.StreamingConfig
    audio: bytes
    def __init__(self, config: _Optional[_Union[_streaming_pb2.StreamingConfig, _Mapping]] = ..., audio: _Optional[bytes] = ...) -> None: ...

class StreamingOrchestrateResponse(_message.Message):
    __slots__ = ("interim", "final_result", "speech_event", "summary", "processed_seconds")
    INTERIM_FIELD_NUMBER: _ClassVar[int]
    FINAL_RESULT_FIELD_NUMBER: _ClassVar[int]
    SPEECH_EVENT_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    PROCESSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    interim: _streaming_pb2.InterimResult
    final_result: _streaming_pb2.FinalResult
    speech_event: _streaming_pb2.SpeechEvent
    summary: _streaming_pb2.StreamingSummary
    processed_seconds: float
    def __init__(self, interim: _Optional[_Union[_streaming_pb2.InterimResult, _Mapping]] = ..., final_result: _Optional[_Union[_streaming_pb2.FinalResult, _Mapping]] = ..., speech_event: _Optional[_Union[_streaming_pb2.SpeechEvent, _Mapping]] = ..., summary: _Optional[_Union[_streaming_pb2.StreamingSummary, _Mapping]] = ..., processed_seconds: _Optional[float] = ...) -> None: ...
