//! Peer SDK: register in the directory, find peers, exchange acknowledged messages over QUIC.
