"""parakeet: the Python client of the parakeet-grpc services.

The generated contract lives in `parakeet.v1` (`*_pb2`, `*_pb2_grpc`); every service imports it
from here, so client and servers can never disagree on the wire format.
"""

__version__ = "0.1.0"
