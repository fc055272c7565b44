//! Repository tools for skiff. Today: the generator of the Kubernetes protobuf message table that
//! `skiff_api::protobuf` decodes request bodies with ([`protobuf`]).

pub mod protobuf;
