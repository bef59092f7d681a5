//! The directory: a leaderless service directory with TTL leases, blocking queries and watch.
