"""Generated protobuf/gRPC code for the relay host protocol (scripts/gen_proto.sh)."""
