"""parakeet: the Python client of the parakeet-grpc services.

The generated contract lives in `parakeet.v1` (`*_pb2`, `*_pb2_grpc`); every service imports it
from here, so client and servers can never disagree on the wire format. `ParakeetClient` and
`AsyncParakeetClient` (in `parakeet.client`) wrap the stubs with typed methods:

    from parakeet import ParakeetClient

    with ParakeetClient("127.0.0.1:50053") as client:
        print(client.transcribe("call.wav", diarize=True, response_format="text").document)
        for response in client.stream("call.wav", diarize=True, realtime=True):  # live
            print(response)
"""

from parakeet.client import (
    AsyncParakeetClient,
    AudioSource,
    ParakeetClient,
    StreamOptions,
    StreamRpc,
    audio_message,
    diarize_request,
    orchestrate_request,
    streaming_config,
    transcribe_request,
)
from parakeet.errors import (
    REASONS,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    ParakeetError,
    Reason,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from parakeet.formats import FormatLike, UnsupportedFormat
from parakeet.streaming import AudioStream, StreamAudio, container_stream, pcm_stream, wav_stream

__version__ = "0.1.0"

__all__ = [
    "REASONS",
    "AsyncParakeetClient",
    "AudioSource",
    "AudioStream",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FormatLike",
    "Internal",
    "InvalidArgument",
    "ParakeetClient",
    "ParakeetError",
    "Reason",
    "ResourceExhausted",
    "StreamAudio",
    "StreamOptions",
    "StreamRpc",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "UnsupportedFormat",
    "__version__",
    "audio_message",
    "container_stream",
    "diarize_request",
    "orchestrate_request",
    "pcm_stream",
    "streaming_config",
    "transcribe_request",
    "wav_stream",
]
