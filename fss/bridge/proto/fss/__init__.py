"""Generated from fss/bridge/proto/fss/v1/fss.proto by scripts/gen_proto.sh."""
