//! The etcd lease that makes one of two roster daemons the active one (issue 13).
//!
//! Two `roster run` daemons form an active/standby pair: the one whose etcd lease holds the
//! leader key (default `/roster/leader`) is active, and before each write stage it proves, in one
//! etcd transaction, that it still holds it (the key's lease and create revision are its own).
//! The state machine and the fencing live here (to be written); [`etcd`] is the small etcd client
//! they stand on.

pub mod etcd;
