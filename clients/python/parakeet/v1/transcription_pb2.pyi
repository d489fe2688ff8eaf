from parakeet.v1 import audio_pb2 as _audio_pb2
from parakeet.v1 import streaming_pb2 as _streaming_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TranscribeRequest(_message.Message):
    __slots__ = ("audio", "language", "timestamps", "word_timestamps", "diarization_segments", "response_format", "hotwords", "multichannel")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    WORD_TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    DIARIZATION_SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    HOTWORDS_FIELD_NUMBER: _ClassVar[int]
    MULTICHANNEL_FIELD_NUMBER: _ClassVar[int]
    audio: _audio_pb2.Audio
    language: str
    timestamps: bool
    word_timestamps: bool
    diarization_segments: _containers.RepeatedCompositeFieldContainer[_audio_pb2.SpeakerTurn]
    response_format: _audio_pb2.ResponseFormat
    hotwords: _containers.RepeatedCompositeFieldContainer[_audio_pb2.Hotword]
    multichannel: bool
    def __init__(self, audio: _Optional[_Union[_audio_pb2.Audio, _Mapping]] = ..., language: _Optional[str] = ..., timestamps: _Optional[bool] = ..., word_timestamps: _Optional[bool] = ..., diarization_segments: _Optional[_Iterable[_Union[_audio_pb2.SpeakerTurn, _Mapping]]] = ..., response_format: _Optional[_Union[_audio_pb2.ResponseFormat, str]] = ..., hotwords: _Optional[_Iterable[_Union[_audio_pb2.Hotword, _Mapping]]] = ..., multichannel: _Optional[bool] = ...) -> None: ...

class TranscribeResponse(_message.Message):
    __slots__ = ("text", "segments", "words", "duration", "language", "model", "response_format", "document", "warnings")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    text: str
    segments: _containers.RepeatedCompositeFieldContainer[_audio_pb2.Segment]
    words: _containers.RepeatedCompositeFieldContainer[_audio_pb2.Word]
    duration: float
    language: str
    model: str
    response_format: _audio_pb2.ResponseFormat
    document: str
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, text: _Optional[str] = ..., segments: _Optional[_Iterable[_Union[_audio_pb2.Segment, _Mapping]]] = ..., words: _Optional[_Iterable[_Union[_audio_pb2.Word, _Mapping]]] = ..., duration: _Optional[float] = ..., language: _Optional[str] = ..., model: _Optional[str] = ..., response_format: _Optional[_Union[_audio_pb2.ResponseFormat, str]] = ..., document: _Optional[str] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class StreamingTranscribeRequest(_message.Message):
    __slots__ = ("config", "audio")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    config: _streaming_pb2.StreamingConfig
    audio: bytes
    def __init__(self, config: _Optional[_Union[_streaming_pb2.StreamingConfig, _Mapping]] = ..., audio: _Optional[bytes] = ...) -> None: ...

class StreamingTranscribeResponse(_message.Message):
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
