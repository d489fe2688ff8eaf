from parakeet.v1 import audio_pb2 as _audio_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AudioEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIO_ENCODING_UNSPECIFIED: _ClassVar[AudioEncoding]
    AUDIO_ENCODING_PCM_S16LE: _ClassVar[AudioEncoding]
    AUDIO_ENCODING_PCM_F32LE: _ClassVar[AudioEncoding]
    AUDIO_ENCODING_CONTAINER: _ClassVar[AudioEncoding]

class SpeechEventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SPEECH_EVENT_TYPE_UNSPECIFIED: _ClassVar[SpeechEventType]
    SPEECH_EVENT_TYPE_SPEECH_STARTED: _ClassVar[SpeechEventType]
    SPEECH_EVENT_TYPE_END_OF_UTTERANCE: _ClassVar[SpeechEventType]
AUDIO_ENCODING_UNSPECIFIED: AudioEncoding
AUDIO_ENCODING_PCM_S16LE: AudioEncoding
AUDIO_ENCODING_PCM_F32LE: AudioEncoding
AUDIO_ENCODING_CONTAINER: AudioEncoding
SPEECH_EVENT_TYPE_UNSPECIFIED: SpeechEventType
SPEECH_EVENT_TYPE_SPEECH_STARTED: SpeechEventType
SPEECH_EVENT_TYPE_END_OF_UTTERANCE: SpeechEventType

class StreamingAudioFormat(_message.Message):
    __slots__ = ("encoding", "sample_rate_hz", "channels", "container")
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    encoding: AudioEncoding
    sample_rate_hz: int
    channels: int
    container: str
    def __init__(self, encoding: _Optional[_Union[AudioEncoding, str]] = ..., sample_rate_hz: _Optional[int] = ..., channels: _Optional[int] = ..., container: _Optional[str] = ...) -> None: ...

class StreamingConfig(_message.Message):
    __slots__ = ("audio_format", "language", "interim_results", "word_timestamps", "diarize", "num_speakers", "min_speakers", "max_speakers", "endpoint_silence_ms", "speakers_optional", "hotwords", "known_speakers", "speaker_match_threshold")
    AUDIO_FORMAT_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    INTERIM_RESULTS_FIELD_NUMBER: _ClassVar[int]
    WORD_TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    DIARIZE_FIELD_NUMBER: _ClassVar[int]
    NUM_SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    MIN_SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    MAX_SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_SILENCE_MS_FIELD_NUMBER: _ClassVar[int]
    SPEAKERS_OPTIONAL_FIELD_NUMBER: _ClassVar[int]
    HOTWORDS_FIELD_NUMBER: _ClassVar[int]
    KNOWN_SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_MATCH_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    audio_format: StreamingAudioFormat
    language: str
    interim_results: bool
    word_timestamps: bool
    diarize: bool
    num_speakers: int
    min_speakers: int
    max_speakers: int
    endpoint_silence_ms: int
    speakers_optional: bool
    hotwords: _containers.RepeatedCompositeFieldContainer[_audio_pb2.Hotword]
    known_speakers: _containers.RepeatedCompositeFieldContainer[_audio_pb2.KnownSpeaker]
    speaker_match_threshold: float
    def __init__(self, audio_format: _Optional[_Union[StreamingAudioFormat, _Mapping]] = ..., language: _Optional[str] = ..., interim_results: _Optional[bool] = ..., word_timestamps: _Optional[bool] = ..., diarize: _Optional[bool] = ..., num_speakers: _Optional[int] = ..., min_speakers: _Optional[int] = ..., max_speakers: _Optional[int] = ..., endpoint_silence_ms: _Optional[int] = ..., speakers_optional: _Optional[bool] = ..., hotwords: _Optional[_Iterable[_Union[_audio_pb2.Hotword, _Mapping]]] = ..., known_speakers: _Optional[_Iterable[_Union[_audio_pb2.KnownSpeaker, _Mapping]]] = ..., speaker_match_threshold: _Optional[float] = ...) -> None: ...

class InterimResult(_message.Message):
    __slots__ = ("text", "stability", "start")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    STABILITY_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    text: str
    stability: float
    start: float
    def __init__(self, text: _Optional[str] = ..., stability: _Optional[float] = ..., start: _Optional[float] = ...) -> None: ...

class FinalResult(_message.Message):
    __slots__ = ("text", "words", "start", "end", "speaker", "utterance_index")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_FIELD_NUMBER: _ClassVar[int]
    UTTERANCE_INDEX_FIELD_NUMBER: _ClassVar[int]
    text: str
    words: _containers.RepeatedCompositeFieldContainer[_audio_pb2.Word]
    start: float
    end: float
    speaker: str
    utterance_index: int
    def __init__(self, text: _Optional[str] = ..., words: _Optional[_Iterable[_Union[_audio_pb2.Word, _Mapping]]] = ..., start: _Optional[float] = ..., end: _Optional[float] = ..., speaker: _Optional[str] = ..., utterance_index: _Optional[int] = ...) -> None: ...

class SpeechEvent(_message.Message):
    __slots__ = ("type", "time")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    type: SpeechEventType
    time: float
    def __init__(self, type: _Optional[_Union[SpeechEventType, str]] = ..., time: _Optional[float] = ...) -> None: ...

class StreamingSummary(_message.Message):
    __slots__ = ("duration", "num_speakers", "speakers", "model", "warnings", "num_finals", "speaker_identities")
    DURATION_FIELD_NUMBER: _ClassVar[int]
    NUM_SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    NUM_FINALS_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_IDENTITIES_FIELD_NUMBER: _ClassVar[int]
    duration: float
    num_speakers: int
    speakers: _containers.RepeatedScalarFieldContainer[str]
    model: str
    warnings: _containers.RepeatedScalarFieldContainer[str]
    num_finals: int
    speaker_identities: _containers.RepeatedCompositeFieldContainer[_audio_pb2.SpeakerIdentity]
    def __init__(self, duration: _Optional[float] = ..., num_speakers: _Optional[int] = ..., speakers: _Optional[_Iterable[str]] = ..., model: _Optional[str] = ..., warnings: _Optional[_Iterable[str]] = ..., num_finals: _Optional[int] = ..., speaker_identities: _Optional[_Iterable[_Union[_audio_pb2.SpeakerIdentity, _Mapping]]] = ...) -> None: ...
